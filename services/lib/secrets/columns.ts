/**
 * A column that holds crypto envelopes. Each database keeps one registry of them (the panel's in
 * services/crypto/encrypted-columns.ts, admin's in services/admin/encrypted-columns.ts): rotation
 * walks it, key status counts it, and a test fails when a migration adds a secret-looking column
 * missing from it. Rows are addressed by `idColumn`, which is also the row id bound into each
 * envelope.
 */
export interface EncryptedColumn {
  table: string;
  column: string;
  idColumn: string;
}

/** A secret-looking column that holds a one-way hash, never the secret. */
export interface HashedColumn {
  table: string;
  column: string;
}

/** Column names that suggest a secret; each must be registered as encrypted or hashed. */
export const secretColumnPattern = /password|secret|token|api_key|apikey|credential|private_key|key_hash/i;
