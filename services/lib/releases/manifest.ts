import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";

/**
 * An agent release as data: `manifest.json` (what was built, per OS/arch: file, size, SHA-256)
 * and `manifest.sig` (base64 Ed25519 signature over the manifest's exact bytes) next to the
 * executables. The agent trusts only the release public key compiled into it; the panel checks
 * uploads against the same key, so nothing unsigned is ever offered to an agent.
 */
export const manifestFormat = "myosicam-agent-release/v1";
export const manifestFile = "manifest.json";
export const signatureFile = "manifest.sig";

/** Versions as the agent reports them (the contract's pattern), kept to what sorts: 1.2.3 or 1.2.3-rc.1. */
export const releaseVersionPattern = /^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})(-[0-9A-Za-z.-]{1,32})?$/;
export const releaseTargetPattern = /^linux-(x64|arm64)$/;

export interface ReleaseArtifact {
  /** `<os>-<arch>`, e.g. linux-x64. */
  target: string;
  /** File name next to the manifest. */
  file: string;
  sha256: string;
  size: number;
}

export interface ReleaseManifest {
  format: typeof manifestFormat;
  version: string;
  /** ISO 8601. */
  builtAt: string;
  artifacts: ReleaseArtifact[];
}

/** Parses manifest bytes strictly; throws with what is wrong, in words. */
export function parseManifest(bytes: Uint8Array): ReleaseManifest {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    throw new Error("the release manifest is not JSON");
  }
  const m = value as Partial<ReleaseManifest>;
  if (typeof m !== "object" || m === null) throw new Error("the release manifest is not an object");
  if (m.format !== manifestFormat) throw new Error(`the release manifest's format is not ${manifestFormat}`);
  if (typeof m.version !== "string" || !releaseVersionPattern.test(m.version)) throw new Error("the release manifest's version is not MAJOR.MINOR.PATCH");
  if (typeof m.builtAt !== "string" || Number.isNaN(Date.parse(m.builtAt))) throw new Error("the release manifest's builtAt is not a date");
  if (!Array.isArray(m.artifacts) || m.artifacts.length === 0 || m.artifacts.length > 8)
    throw new Error("the release manifest lists no artifacts (or too many)");
  const targets = new Set<string>();
  for (const a of m.artifacts as Partial<ReleaseArtifact>[]) {
    if (typeof a?.target !== "string" || !releaseTargetPattern.test(a.target)) throw new Error("a release artifact's target is not linux-x64 or linux-arm64");
    if (targets.has(a.target)) throw new Error(`the release manifest lists ${a.target} twice`);
    targets.add(a.target);
    if (typeof a.file !== "string" || !/^[A-Za-z0-9._-]{1,128}$/.test(a.file) || a.file.startsWith("."))
      throw new Error(`the file name of ${a.target} is not a plain file name`);
    if (typeof a.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(a.sha256)) throw new Error(`the SHA-256 of ${a.target} is not 64 hex characters`);
    if (!Number.isSafeInteger(a.size) || (a.size as number) <= 0 || (a.size as number) > 1 << 30)
      throw new Error(`the size of ${a.target} is not between 1 byte and 1 GiB`);
  }
  return { format: manifestFormat, version: m.version, builtAt: m.builtAt, artifacts: m.artifacts as ReleaseArtifact[] };
}

/** The manifest's bytes as written: stable key order, one trailing newline. */
export function manifestBytes(manifest: ReleaseManifest): Buffer {
  const ordered = {
    format: manifest.format,
    version: manifest.version,
    builtAt: manifest.builtAt,
    artifacts: manifest.artifacts.map((a) => ({ target: a.target, file: a.file, sha256: a.sha256, size: a.size })),
  };
  return Buffer.from(`${JSON.stringify(ordered, null, 2)}\n`);
}

/** A new Ed25519 release key pair, as PEM (PKCS#8 private, SPKI public). */
export function generateReleaseKeys(): { privatePem: string; publicPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const publicPem = publicKey.export({ type: "spki", format: "pem" }).toString();
  return { privatePem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), publicPem, keyId: releaseKeyId(publicPem) };
}

function publicKeyOf(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new Error("the release public key is not a PEM public key");
  }
  if (key.asymmetricKeyType !== "ed25519") throw new Error(`the release public key is ${key.asymmetricKeyType}, not Ed25519`);
  return key;
}

/** What names a release key in logs and messages: the first 16 hex characters of the SHA-256 of its raw key. */
export function releaseKeyId(publicPem: string): string {
  const raw = publicKeyOf(publicPem).export({ type: "spki", format: "der" });
  return createHash("sha256").update(raw).digest("hex").slice(0, 16);
}

/** Signs manifest bytes; answers the signature file's content (base64 and a newline). */
export function signManifest(bytes: Uint8Array, privatePem: string): string {
  let key: KeyObject;
  try {
    key = createPrivateKey(privatePem);
  } catch {
    throw new Error("the release private key is not a PEM private key");
  }
  if (key.asymmetricKeyType !== "ed25519") throw new Error(`the release private key is ${key.asymmetricKeyType}, not Ed25519`);
  return `${sign(null, bytes, key).toString("base64")}\n`;
}

/**
 * Checks a manifest's signature with the trusted public key, then parses it. Throws, in words,
 * when the signature is not the key's or the manifest is malformed.
 */
export function verifyManifest(bytes: Uint8Array, signature: string | Uint8Array, publicPem: string): ReleaseManifest {
  const text = typeof signature === "string" ? signature : Buffer.from(signature).toString("utf8");
  const sig = Buffer.from(text.trim(), "base64");
  if (sig.length !== 64 || !verify(null, bytes, publicKeyOf(publicPem), sig)) {
    throw new Error(`the release manifest is not signed by release key ${releaseKeyId(publicPem)}`);
  }
  return parseManifest(bytes);
}

/** Orders versions (numeric parts; a pre-release sorts before its release). */
export function compareVersions(a: string, b: string): number {
  const parse = (v: string) => {
    const [core, pre] = v.split(/-(.*)/s, 2) as [string, string | undefined];
    return { parts: core.split(".").map((p) => Number(p)), pre };
  };
  const x = parse(a);
  const y = parse(b);
  for (let i = 0; i < 3; i++) {
    const d = (x.parts[i] ?? 0) - (y.parts[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  if (x.pre === y.pre) return 0;
  if (x.pre === undefined) return 1;
  if (y.pre === undefined) return -1;
  return x.pre < y.pre ? -1 : 1;
}
