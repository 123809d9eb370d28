import { createHash, createHmac, randomBytes } from "node:crypto";

/** The headers of a signed request (DESIGN.md §3.1), lowercase as HTTP/2 sends them. */
export const hmacHeaders = {
  callerId: "x-caller-id",
  timestamp: "x-timestamp",
  nonce: "x-nonce",
  signature: "x-signature",
} as const;

/** First line of every canonical string; names the scheme and its version. */
export const signatureScheme = "MYOSICAM-HMAC-SHA256";

/** What a signature covers. */
export interface SignedParts {
  callerId: string;
  /** Unix seconds, as sent in X-Timestamp. */
  timestamp: string;
  /** 32 lowercase hex characters, as sent in X-Nonce. */
  nonce: string;
  /** The request path, e.g. `/myosicam.license.v1.LicenseService/ValidateLicense`. */
  procedure: string;
  /** Lowercase hex SHA-256 of the exact body bytes as sent. */
  bodySha256: string;
}

/** The canonical string: the scheme, then each part, joined by `\n`, no trailing newline. */
export function canonicalString(parts: SignedParts): string {
  return [signatureScheme, parts.callerId, parts.timestamp, parts.nonce, parts.procedure, parts.bodySha256].join("\n");
}

/** Lowercase hex SHA-256 of `body`. */
export function sha256Hex(body: Uint8Array | string): string {
  return createHash("sha256").update(body).digest("hex");
}

/** Lowercase hex HMAC-SHA256 of the canonical string under `secret`. */
export function signatureOf(secret: string | Uint8Array, parts: SignedParts): string {
  return createHmac("sha256", secret).update(canonicalString(parts)).digest("hex");
}

/** A fresh nonce: 16 random bytes as 32 lowercase hex characters. */
export function newNonce(): string {
  return randomBytes(16).toString("hex");
}

/**
 * The four headers that sign `body` sent to `procedure`, at `nowSeconds` with a fresh nonce.
 * The secret is used as its UTF-8 bytes (an agent token or a caller secret, both hex text).
 */
export function signingHeaders(input: {
  callerId: string;
  secret: string;
  procedure: string;
  body: Uint8Array;
  nowSeconds: number;
  nonce?: string;
}): Record<string, string> {
  const parts: SignedParts = {
    callerId: input.callerId,
    timestamp: String(Math.floor(input.nowSeconds)),
    nonce: input.nonce ?? newNonce(),
    procedure: input.procedure,
    bodySha256: sha256Hex(input.body),
  };
  return {
    [hmacHeaders.callerId]: parts.callerId,
    [hmacHeaders.timestamp]: parts.timestamp,
    [hmacHeaders.nonce]: parts.nonce,
    [hmacHeaders.signature]: signatureOf(input.secret, parts),
  };
}
