/**
 * The stored form of a secret (DESIGN.md §3.5): `enc:v1:<key id>:<base64url(nonce‖ciphertext‖tag)>`,
 * with a 12-byte nonce and a 16-byte GCM tag.
 */
export interface Envelope {
  keyId: string;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

export const envelopePrefix = "enc:v1:";
export const nonceBytes = 12;
export const tagBytes = 16;

const shape = /^enc:v1:([0-9a-f]{16}):([A-Za-z0-9_-]+)$/;

/** Where a value is stored; bound into the ciphertext as associated data. */
export interface EncryptionContext {
  table: string;
  column: string;
  rowId: string;
}

/** Why an envelope could not be opened. */
export type EnvelopeErrorKind = "malformed" | "unknown_key" | "tampered";

/** An envelope that cannot be opened; `message` names the key id, never the plaintext. */
export class EnvelopeError extends Error {
  override name = "EnvelopeError";
  constructor(
    readonly kind: EnvelopeErrorKind,
    message: string,
  ) {
    super(message);
  }
}

/** Writes an envelope as text. */
export function formatEnvelope(e: Envelope): string {
  return envelopePrefix + e.keyId + ":" + Buffer.concat([e.nonce, e.ciphertext, e.tag]).toString("base64url");
}

/** Reads an envelope's text; throws EnvelopeError("malformed") for anything else. */
export function parseEnvelope(text: string): Envelope {
  const match = shape.exec(text);
  if (!match) {
    throw new EnvelopeError("malformed", "not an encrypted value: expected enc:v1:<16 hex key id>:<base64url data>");
  }
  const raw = Buffer.from(match[2]!, "base64url");
  if (raw.length < nonceBytes + tagBytes) {
    throw new EnvelopeError("malformed", `encrypted value is truncated (${raw.length} bytes, at least ${nonceBytes + tagBytes} expected)`);
  }
  return {
    keyId: match[1]!,
    nonce: raw.subarray(0, nonceBytes),
    ciphertext: raw.subarray(nonceBytes, raw.length - tagBytes),
    tag: raw.subarray(raw.length - tagBytes),
  };
}

/** The key id an envelope names, or undefined for text that is not an envelope. */
export function envelopeKeyId(text: string): string | undefined {
  return shape.exec(text)?.[1];
}

/** What is bound as AES-GCM associated data: format version, key id and location. */
export function associatedData(keyId: string, context: EncryptionContext): Buffer {
  return Buffer.from(["myosicam-enc-v1", keyId, context.table, context.column, context.rowId].join("\n"), "utf8");
}
