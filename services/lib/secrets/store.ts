import type { Knex } from "../db.js";
import { envelopePrefix } from "./envelope.js";
import type { EncryptedColumn } from "./columns.js";

/** A stored envelope and the row it belongs to. */
export interface StoredSecret {
  rowId: string;
  envelope: string;
}

/** How many values of `column` each key id sealed (rows whose value is null are not counted). */
export async function countByKeyId(db: Knex, c: EncryptedColumn): Promise<Array<{ keyId: string; count: number }>> {
  const rows = await db(c.table)
    .select(db.raw("split_part(??, ':', 3) as key_id", [c.column]))
    .count({ count: "*" })
    .whereNotNull(c.column)
    .groupByRaw("1")
    .orderByRaw("1");
  return (rows as Array<{ key_id: string; count: string | number }>).map((r) => ({ keyId: String(r.key_id), count: Number(r.count) }));
}

/**
 * The next `limit` values of `column` not sealed with `activeKeyId`, in row-id order after
 * `afterRowId` (keyset pagination, so a value that cannot be rotated is passed, not retried).
 */
export async function selectSecretsToRotate(
  db: Knex,
  c: EncryptedColumn,
  activeKeyId: string,
  afterRowId: string | undefined,
  limit: number,
): Promise<StoredSecret[]> {
  const query = db(c.table)
    .select({ rowId: db.raw("??::text", [c.idColumn]), envelope: c.column })
    .whereNotNull(c.column)
    .whereNot(c.column, "like", `${envelopePrefix}${activeKeyId}:%`)
    .orderBy(c.idColumn)
    .limit(limit)
    .forUpdate()
    .skipLocked();
  if (afterRowId !== undefined) query.where(c.idColumn, ">", afterRowId);
  return (await query) as StoredSecret[];
}

/** Every value of `column` in row-id order after `afterRowId`, `limit` at a time (verification). */
export async function selectSecrets(db: Knex, c: EncryptedColumn, afterRowId: string | undefined, limit: number): Promise<StoredSecret[]> {
  const query = db(c.table)
    .select({ rowId: db.raw("??::text", [c.idColumn]), envelope: c.column })
    .whereNotNull(c.column)
    .orderBy(c.idColumn)
    .limit(limit);
  if (afterRowId !== undefined) query.where(c.idColumn, ">", afterRowId);
  return (await query) as StoredSecret[];
}

/** A new envelope for a row, replacing the one that was read. */
export interface SecretReplacement {
  rowId: string;
  from: string;
  to: string;
}

/**
 * Replaces envelopes in one statement; a row whose value changed since it was read keeps the
 * newer value. Answers how many rows were replaced.
 */
export async function replaceSecrets(db: Knex, c: EncryptedColumn, changes: readonly SecretReplacement[]): Promise<number> {
  if (changes.length === 0) return 0;
  const values = changes.map(() => "(?::text, ?::text, ?::text)").join(", ");
  const result = await db.raw(
    `update ?? as t set ?? = v.next from (values ${values}) as v(row_id, previous, next)
      where t.??::text = v.row_id and t.?? = v.previous`,
    [c.table, c.column, ...changes.flatMap((x) => [x.rowId, x.from, x.to]), c.idColumn, c.column],
  );
  return result.rowCount ?? 0;
}
