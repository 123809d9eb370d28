import { X509Certificate, createHash, createPrivateKey } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { isIP } from "node:net";
import { join } from "node:path";
import { generate } from "selfsigned";
import { writeFileAtomic } from "./atomic-file.js";
import { ConfigError } from "./config.js";

/** The certificate and key a server presents. */
export interface TlsIdentity {
  cert: string;
  key: string;
  /** `sha256:` + 64 lowercase hex of the DER certificate; what agents pin. */
  fingerprint: string;
  /** Where it came from: the configured files or the generated self-signed pair. */
  source: "configured" | "self-signed (new)" | "self-signed (reused)";
  certFile: string;
}

export interface TlsOptions {
  dataDir: string;
  certFile?: string;
  keyFile?: string;
  /** Extra DNS names or IP addresses for a generated certificate. */
  names?: string[];
}

/** File names of the generated pair inside the data directory. */
export const selfSignedFiles = { cert: "tls/panel.crt", key: "tls/panel.key" } as const;

/**
 * Loads `PANEL_TLS_CERT`/`PANEL_TLS_KEY` when configured (a missing or unparsable file is a
 * ConfigError naming the setting), else reuses the self-signed pair in the data directory, else
 * creates one (EC P-256, valid 5 years, names: localhost, 127.0.0.1, ::1, this host's name).
 */
export async function loadTlsIdentity(options: TlsOptions): Promise<TlsIdentity> {
  if (options.certFile !== undefined && options.keyFile !== undefined) {
    const cert = await readSetting("PANEL_TLS_CERT", options.certFile);
    const key = await readSetting("PANEL_TLS_KEY", options.keyFile);
    const fingerprint = fingerprintOf(cert, "PANEL_TLS_CERT");
    try {
      createPrivateKey(key);
    } catch {
      throw new ConfigError("PANEL_TLS_KEY", `${options.keyFile} holds no PEM private key`);
    }
    return { cert, key, fingerprint, source: "configured", certFile: options.certFile };
  }

  const certFile = join(options.dataDir, selfSignedFiles.cert);
  const keyFile = join(options.dataDir, selfSignedFiles.key);
  const existing = await readPair(certFile, keyFile);
  if (existing) {
    return { ...existing, fingerprint: fingerprintOf(existing.cert, "MYOSICAM_DATA_DIR"), source: "self-signed (reused)", certFile };
  }
  const created = await createSelfSigned(options.names ?? []);
  await mkdir(join(options.dataDir, "tls"), { recursive: true, mode: 0o700 });
  await writeFileAtomic(keyFile, created.key, 0o600);
  await writeFileAtomic(certFile, created.cert, 0o644);
  return { ...created, fingerprint: fingerprintOf(created.cert, "MYOSICAM_DATA_DIR"), source: "self-signed (new)", certFile };
}

/** `sha256:<hex>` of a PEM certificate. */
export function fingerprintOf(pem: string, setting: string): string {
  try {
    return "sha256:" + new X509Certificate(pem).fingerprint256.replaceAll(":", "").toLowerCase();
  } catch {
    throw new ConfigError(setting, "the certificate is not a PEM X.509 certificate");
  }
}

/** `sha256//<base64>` of the certificate's public key, the form curl's --pinnedpubkey takes. */
export function publicKeyPin(certificate: string): string {
  const spki = new X509Certificate(certificate).publicKey.export({ type: "spki", format: "der" });
  return "sha256//" + createHash("sha256").update(spki).digest("base64");
}

/**
 * The command that enrolls an agent, run as root on the server beside deploy/bootstrap.sh: the
 * token goes in on stdin (never in the process list), with the panel's URL and both pins.
 */
export function bootstrapCommand(token: string, panelUrl: string, certificate: string): string {
  return (
    `printf '%s\\n' '${token}' | MYOSICAM_PANEL_URL=${panelUrl} MYOSICAM_PANEL_FINGERPRINT=${fingerprintOf(certificate, "PANEL_TLS_CERT")} ` +
    `MYOSICAM_PANEL_PUBKEY_PIN='${publicKeyPin(certificate)}' sh bootstrap.sh`
  );
}

async function createSelfSigned(extraNames: string[]): Promise<{ cert: string; key: string }> {
  const names = new Set(["localhost", "127.0.0.1", "::1", hostname(), ...extraNames].filter((n) => n && n !== "0.0.0.0" && n !== "::"));
  const altNames = [...names].map((name) => (isIP(name) ? { type: 7 as const, ip: name } : { type: 2 as const, value: name }));
  const notAfter = new Date();
  notAfter.setFullYear(notAfter.getFullYear() + 5);
  const pair = await generate([{ name: "commonName", value: "MyOsicam panel" }], {
    keyType: "ec",
    curve: "P-256",
    algorithm: "sha256",
    // Valid from a day before its creation: an agent whose clock is behind (minutes, even hours)
    // still completes the handshake, and is then told by the signature check that its clock is off.
    notBeforeDate: new Date(Date.now() - 24 * 3600_000),
    notAfterDate: notAfter,
    extensions: [
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, critical: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames },
    ],
  });
  return { cert: pair.cert, key: pair.private };
}

async function readSetting(setting: string, file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "does not exist" : code === "EACCES" ? "is not readable" : `cannot be read (${code})`;
    throw new ConfigError(setting, `${file} ${why}`);
  }
}

async function readPair(certFile: string, keyFile: string): Promise<{ cert: string; key: string } | undefined> {
  try {
    return { cert: await readFile(certFile, "utf8"), key: await readFile(keyFile, "utf8") };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new ConfigError("MYOSICAM_DATA_DIR", `cannot read the generated certificate in ${certFile}`);
  }
}
