import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, randomBytes, type KeyObject } from "node:crypto";
import { EnvelopeError, associatedData, formatEnvelope, nonceBytes, parseEnvelope, tagBytes, type EncryptionContext } from "./envelope.js";

/** An AES-256-GCM key derived from a master key, and the id it is known by. */
interface DerivedKey {
  id: string;
  /** A KeyObject, not a Buffer: a cipher made from it skips a per-call key import (about 3× faster). */
  key: KeyObject;
}

/** The active key (seals) and, during a rotation, the previous one (opens only). */
export interface Keyring {
  readonly activeKeyId: string;
  readonly previousKeyId?: string;
  /** Seals `plaintext` for `context` with the active key and a fresh random nonce. */
  seal(plaintext: Uint8Array, context: EncryptionContext): string;
  /** Opens an envelope made for `context`; throws EnvelopeError (malformed, unknown_key, tampered). */
  open(envelope: string, context: EncryptionContext): { plaintext: Buffer; keyId: string; sealedWithPrevious: boolean };
}

const salt = Buffer.from("myosicam secrets at rest");

/**
 * Fresh random nonces, drawn from the CSPRNG 256 at a time: a batch of thousands of seals pays
 * for one system call per 256 values instead of one each. Every nonce is still used only once.
 */
let noncePool = Buffer.alloc(0);
let noncePoolOffset = 0;
function nextNonce(): Buffer {
  if (noncePoolOffset + nonceBytes > noncePool.length) {
    noncePool = randomBytes(nonceBytes * 256);
    noncePoolOffset = 0;
  }
  const nonce = noncePool.subarray(noncePoolOffset, noncePoolOffset + nonceBytes);
  noncePoolOffset += nonceBytes;
  return nonce;
}

/**
 * Derives the encryption key and its public id from a 32-byte master key with HKDF-SHA256, each
 * under its own label, so the id reveals nothing about the key.
 */
export function deriveKey(masterKeyHex: string): DerivedKey {
  const master = Buffer.from(masterKeyHex, "hex");
  if (master.length !== 32) throw new Error("an encryption key is 32 bytes (64 hex characters)");
  const key = createSecretKey(Buffer.from(hkdfSync("sha256", master, salt, "myosicam/aes-256-gcm/v1", 32)));
  const id = Buffer.from(hkdfSync("sha256", master, salt, "myosicam/key-id/v1", 8)).toString("hex");
  return { id, key };
}

/**
 * A keyring from an active master key and, optionally, the previous one (`PANEL_ENCRYPTION_KEY`
 * and `PANEL_ENCRYPTION_KEY_PREVIOUS`, or admin's `ADMIN_ENCRYPTION_KEY` pair). `setting` names
 * the active key's variable in error messages.
 */
export function createKeyring(activeKeyHex: string, previousKeyHex?: string, setting = "PANEL_ENCRYPTION_KEY"): Keyring {
  const active = deriveKey(activeKeyHex);
  const previous = previousKeyHex ? deriveKey(previousKeyHex) : undefined;
  const byId = new Map([[active.id, active]]);
  if (previous) byId.set(previous.id, previous);

  return {
    activeKeyId: active.id,
    previousKeyId: previous?.id,
    seal(plaintext, context) {
      const nonce = nextNonce();
      const cipher = createCipheriv("aes-256-gcm", active.key, nonce, { authTagLength: tagBytes });
      cipher.setAAD(associatedData(active.id, context));
      const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return formatEnvelope({ keyId: active.id, nonce, ciphertext, tag: cipher.getAuthTag() });
    },
    open(text, context) {
      const envelope = parseEnvelope(text);
      const derived = byId.get(envelope.keyId);
      if (!derived) {
        const known = previous ? `${active.id} (active) or ${previous.id} (previous)` : `${active.id} (active)`;
        throw new EnvelopeError(
          "unknown_key",
          `value was encrypted with key ${envelope.keyId}, but ${setting} holds ${known}; configure that key as ${setting}_PREVIOUS`,
        );
      }
      try {
        const decipher = createDecipheriv("aes-256-gcm", derived.key, envelope.nonce, { authTagLength: tagBytes });
        decipher.setAAD(associatedData(derived.id, context));
        decipher.setAuthTag(envelope.tag);
        const plaintext = Buffer.concat([decipher.update(envelope.ciphertext), decipher.final()]);
        return { plaintext, keyId: derived.id, sealedWithPrevious: derived.id !== active.id };
      } catch {
        throw new EnvelopeError(
          "tampered",
          `value sealed with key ${derived.id} does not decrypt for ${context.table}.${context.column} row ${context.rowId}: it was altered, or belongs to another row`,
        );
      }
    },
  };
}
