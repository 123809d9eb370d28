import { createHash, X509Certificate } from "node:crypto";
import { checkServerIdentity as defaultCheck, connect, type PeerCertificate } from "node:tls";

/** `sha256:<64 hex>` of a DER certificate, the form `npm start` prints. */
export const fingerprintOf = (der: Buffer) => `sha256:${createHash("sha256").update(der).digest("hex")}`;

export const pinPattern = /^sha256:[0-9a-f]{64}$/;

/** A certificate that does not match the pin: not retried, the operator must act. */
export class PinMismatchError extends Error {
  override name = "PinMismatchError";
}

/**
 * Fetches the panel's certificate once (without trusting it yet) and accepts it only when its
 * fingerprint is the pinned one; answers it as PEM, to be used as the only trust anchor.
 */
export async function fetchPinnedCertificate(panelUrl: string, pin: string): Promise<string> {
  const url = new URL(panelUrl);
  const der = await new Promise<Buffer>((resolve, reject) => {
    const socket = connect({
      host: url.hostname,
      port: Number(url.port || 443),
      servername: url.hostname.match(/^[\d.]+$|:/) ? undefined : url.hostname,
      rejectUnauthorized: false,
      minVersion: "TLSv1.3",
    });
    socket.setTimeout(15_000, () => socket.destroy(new Error(`no TLS answer from ${url.host} within 15 s`)));
    socket.once("secureConnect", () => {
      const cert = socket.getPeerCertificate();
      socket.end();
      if (!cert?.raw) reject(new Error(`${url.host} presented no certificate`));
      else resolve(cert.raw);
    });
    socket.once("error", reject);
  });
  const actual = fingerprintOf(der);
  if (actual !== pin) {
    throw new PinMismatchError(
      `the panel at ${url.host} presented certificate ${actual}, but the pinned fingerprint is ${pin}; check --pin against the fingerprint \`npm start\` printed`,
    );
  }
  return new X509Certificate(der).toString();
}

/** A certificate check that, after chain verification, also requires the pinned fingerprint. */
export function pinCheck(pin: string) {
  return (host: string, cert: PeerCertificate): Error | undefined => {
    const actual = fingerprintOf(cert.raw);
    if (actual !== pin) return new PinMismatchError(`the panel presented certificate ${actual}, but the pinned fingerprint is ${pin}`);
    // The pinned certificate is trusted for its own names; an IP address literal is checked the same way.
    return defaultCheck(host, cert);
  };
}
