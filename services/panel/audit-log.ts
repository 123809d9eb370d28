import { createHash } from "node:crypto";
import type { Knex } from "../lib/db.js";

/** One row of the audit log as written; `id`, `at` and the hashes are added by `appendAudit`. */
export interface AuditEntry {
  actorKind: "operator" | "api_client" | "system";
  actorId: string;
  actorName: string;
  action: string;
  target: string;
  /** "ok", or the error code (e.g. "permission_denied"). */
  outcome: string;
  detail: string;
  ip: string;
  requestId: string;
}

/** A stored row. */
export interface AuditRow {
  id: string;
  at: Date;
  actor_kind: string;
  actor_id: string;
  actor_name: string;
  action: string;
  target: string;
  outcome: string;
  detail: string;
  ip: string;
  request_id: string;
  prev_hash: string;
  hash: string;
}

/** The hash the first row links to. */
export const genesisHash = "0".repeat(64);

/** Serialises every stored column but the hashes, unambiguously (JSON array), in a fixed order. */
function canonicalRow(row: Omit<AuditRow, "hash" | "prev_hash">): string {
  return JSON.stringify([
    String(row.id),
    new Date(row.at).toISOString(),
    row.actor_kind,
    row.actor_id,
    row.actor_name,
    row.action,
    row.target,
    row.outcome,
    row.detail,
    row.ip,
    row.request_id,
  ]);
}

/** SHA-256 over the previous row's hash and this row's content: the chain link. */
export function auditHash(prevHash: string, row: Omit<AuditRow, "hash" | "prev_hash">): string {
  return createHash("sha256")
    .update(`${prevHash}\n${canonicalRow(row)}`, "utf8")
    .digest("hex");
}

// One lock for the whole log: rows get their id and their predecessor's hash under it, so ids
// follow commit order and the chain never forks. Held only from the append to the commit.
const auditLockKey = 0x6d796f73; // "myos"

/**
 * Appends one row to the chain. Runs in the caller's transaction (the mutation's own, so the row
 * commits with the change or not at all); outside one it opens its own.
 */
export async function appendAudit(db: Knex, entry: AuditEntry): Promise<AuditRow> {
  if (!db.isTransaction) return db.transaction((trx) => appendAudit(trx, entry));
  await db.raw("select pg_advisory_xact_lock(?)", [auditLockKey]);
  const last = await db("audit_log").orderBy("id", "desc").first("hash");
  const { rows } = await db.raw("select nextval('audit_log_id_seq') as id");
  const row = {
    id: String(rows[0].id),
    // Millisecond precision, so what is hashed is exactly what PostgreSQL stores and returns.
    at: new Date(),
    actor_kind: entry.actorKind,
    actor_id: entry.actorId,
    actor_name: entry.actorName,
    action: entry.action,
    target: entry.target,
    outcome: entry.outcome,
    detail: entry.detail,
    ip: entry.ip,
    request_id: entry.requestId,
  };
  const prevHash = (last?.hash as string | undefined) ?? genesisHash;
  const stored = { ...row, prev_hash: prevHash, hash: auditHash(prevHash, row) };
  await db("audit_log").insert(stored);
  return stored;
}

/** What `verifyAuditChain` found. */
export type ChainVerdict = { intact: true; rows: number } | { intact: false; rows: number; brokenAt: string; reason: string };

/**
 * Walks the log in id order and recomputes every link. Answers the first row whose content does
 * not match its hash (edited), or whose `prev_hash` is not its predecessor's hash (a row before
 * it was deleted, inserted or edited along with its hash).
 */
export async function verifyAuditChain(db: Knex, batchSize = 2000): Promise<ChainVerdict> {
  let prevHash = genesisHash;
  let prevId: string | undefined;
  let rows = 0;
  for (;;) {
    const query = db("audit_log").orderBy("id").limit(batchSize);
    if (prevId !== undefined) query.where("id", ">", prevId);
    const batch: AuditRow[] = await query;
    for (const row of batch) {
      rows++;
      if (row.prev_hash !== prevHash) {
        const before = prevId === undefined ? "the start of the log" : `row ${prevId}`;
        return { intact: false, rows, brokenAt: String(row.id), reason: `its prev_hash does not match ${before}: a row between them was deleted or altered` };
      }
      if (auditHash(row.prev_hash, row) !== row.hash) {
        return { intact: false, rows, brokenAt: String(row.id), reason: "its content does not match its hash: the row was edited" };
      }
      prevHash = row.hash;
      prevId = String(row.id);
    }
    if (batch.length < batchSize) return { intact: true, rows };
  }
}
