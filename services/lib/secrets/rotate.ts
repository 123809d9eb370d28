import { ConfigError } from "../config.js";
import type { Knex } from "../db.js";
import { EnvelopeError } from "./envelope.js";
import type { EncryptedColumn } from "./columns.js";
import type { Keyring } from "./keyring.js";
import { countByKeyId, replaceSecrets, selectSecrets, selectSecretsToRotate, type SecretReplacement } from "./store.js";

/** A value that could not be rotated or verified, and why (never the value). */
export interface SecretFailure {
  table: string;
  column: string;
  rowId: string;
  reason: string;
}

/** Progress after each committed batch. */
export interface RotationProgress {
  table: string;
  column: string;
  /** Values of this column moved to the active key so far. */
  rotated: number;
  /** Values of this column still on another key when the batch began. */
  remaining: number;
}

export interface RotateOptions {
  db: Knex;
  keyring: Keyring;
  /** The registry of the database being rotated. */
  columns: readonly EncryptedColumn[];
  /** Values re-encrypted per transaction; default 500. */
  batchSize?: number;
  onProgress?: (progress: RotationProgress) => void;
  /** Called after each committed batch with the running count (fault injection in tests). */
  afterBatch?: (batchesCommitted: number) => void;
  signal?: AbortSignal;
}

export interface RotationReport {
  activeKeyId: string;
  columns: Array<{ table: string; column: string; rotated: number }>;
  failures: SecretFailure[];
  verification: VerificationReport;
}

export interface VerificationReport {
  checked: number;
  failures: SecretFailure[];
}

/** How many values of each column are not on the active key: what a rotation would change. */
export async function pendingRotation(db: Knex, keyring: Keyring, columns: readonly EncryptedColumn[]) {
  const result: Array<{ table: string; column: string; toRotate: number; byKeyId: Record<string, number> }> = [];
  for (const c of columns) {
    const counts = await countByKeyId(db, c);
    const toRotate = counts.filter((k) => k.keyId !== keyring.activeKeyId).reduce((n, k) => n + k.count, 0);
    result.push({ table: c.table, column: c.column, toRotate, byKeyId: Object.fromEntries(counts.map((k) => [k.keyId, k.count])) });
  }
  return result;
}

/**
 * Re-encrypts every registered column's values that are not on the active key, `batchSize` per
 * transaction. Values already on the active key are skipped, so an interrupted run is simply run
 * again. Ends by decrypting every stored value (`verification`); values that cannot be opened are
 * listed in `failures` and left as they are.
 */
export async function rotateSecrets(options: RotateOptions): Promise<RotationReport> {
  const { db, keyring } = options;
  const { columns } = options;
  const batchSize = options.batchSize ?? 500;
  const failures: SecretFailure[] = [];
  const summary: RotationReport["columns"] = [];
  let batches = 0;

  for (const c of columns) {
    let rotated = 0;
    let after: string | undefined;
    const pending = (await countByKeyId(db, c)).filter((k) => k.keyId !== keyring.activeKeyId).reduce((n, k) => n + k.count, 0);
    for (;;) {
      options.signal?.throwIfAborted();
      const batch = await db.transaction(async (trx) => {
        const rows = await selectSecretsToRotate(trx, c, keyring.activeKeyId, after, batchSize);
        const changes: SecretReplacement[] = [];
        for (const row of rows) {
          const context = { table: c.table, column: c.column, rowId: row.rowId };
          try {
            const { plaintext } = keyring.open(row.envelope, context);
            changes.push({ rowId: row.rowId, from: row.envelope, to: keyring.seal(plaintext, context) });
          } catch (err) {
            failures.push({ ...context, reason: reasonOf(err) });
          }
        }
        const replaced = await replaceSecrets(trx, c, changes);
        return { count: rows.length, replaced, last: rows.at(-1)?.rowId };
      });
      if (batch.count === 0) break;
      after = batch.last;
      rotated += batch.replaced;
      batches += 1;
      options.onProgress?.({ table: c.table, column: c.column, rotated, remaining: Math.max(0, pending - rotated) });
      options.afterBatch?.(batches);
    }
    summary.push({ table: c.table, column: c.column, rotated });
  }
  const verification = await verifySecrets(db, keyring, columns, batchSize);
  return { activeKeyId: keyring.activeKeyId, columns: summary, failures, verification };
}

/** Decrypts every stored value of every registered column; lists those that do not open. */
export async function verifySecrets(db: Knex, keyring: Keyring, columns: readonly EncryptedColumn[], batchSize = 1000): Promise<VerificationReport> {
  let checked = 0;
  const failures: SecretFailure[] = [];
  for (const c of columns) {
    let after: string | undefined;
    for (;;) {
      const rows = await selectSecrets(db, c, after, batchSize);
      if (rows.length === 0) break;
      for (const row of rows) {
        checked += 1;
        try {
          keyring.open(row.envelope, { table: c.table, column: c.column, rowId: row.rowId });
        } catch (err) {
          failures.push({ table: c.table, column: c.column, rowId: row.rowId, reason: reasonOf(err) });
        }
      }
      after = rows.at(-1)!.rowId;
    }
  }
  return { checked, failures };
}

/**
 * Refuses to start when stored secrets were sealed with a key this process does not hold: serving
 * on would fail every decryption and, worse, mix keys. Typical cause: a lost or replaced
 * config/.env. `setting` names the key's variable; `what` the secrets, for the message.
 */
export async function refuseUnknownKeys(db: Knex, keyring: Keyring, columns: readonly EncryptedColumn[], setting: string, what: string): Promise<void> {
  const unknown = await unknownKeyIds(db, keyring, columns);
  if (unknown.length > 0) {
    throw new ConfigError(
      setting,
      `${what} are sealed with key ${unknown.join(", ")}, which is not configured (active key is ${keyring.activeKeyId}); restore config/.env from backup, or set the old key as ${setting}_PREVIOUS`,
    );
  }
}

/** Key ids found in stored values that this keyring cannot open. */
export async function unknownKeyIds(db: Knex, keyring: Keyring, columns: readonly EncryptedColumn[]): Promise<string[]> {
  const known = new Set([keyring.activeKeyId, keyring.previousKeyId].filter(Boolean));
  const unknown = new Set<string>();
  for (const c of columns) for (const { keyId } of await countByKeyId(db, c)) if (!known.has(keyId)) unknown.add(keyId);
  return [...unknown];
}

function reasonOf(err: unknown): string {
  return err instanceof EnvelopeError ? err.message : "unexpected error while re-encrypting";
}
