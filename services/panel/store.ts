import type { Knex } from "../lib/db.js";
import type { RoleName, ServerScope } from "../lib/principal.js";

/** An operator row (the password hash stays here; nothing above the store returns it). */
export interface OperatorRow {
  id: string;
  email: string;
  password_hash: string;
  role: RoleName;
  scope_server_ids: string[];
  scope_tags: string[];
  temporary_login: boolean;
  disabled_at: Date | null;
  created_by: string;
  created_at: Date;
  last_login_at: Date | null;
}

export const scopeOf = (row: { scope_server_ids: string[]; scope_tags: string[] }): ServerScope => ({
  serverIds: row.scope_server_ids,
  tags: row.scope_tags,
});

const scopeColumns = (scope: ServerScope) => ({ scope_server_ids: [...scope.serverIds], scope_tags: [...scope.tags] });

export async function countOperators(db: Knex): Promise<number> {
  const [row] = await db("operators").count<Array<{ count: string }>>("* as count");
  return Number(row!.count);
}

export async function selectOperators(db: Knex): Promise<OperatorRow[]> {
  return db("operators").orderBy("email");
}

export async function selectOperator(db: Knex, id: string): Promise<OperatorRow | undefined> {
  return db("operators").where({ id }).first();
}

export async function selectOperatorByEmail(db: Knex, email: string): Promise<OperatorRow | undefined> {
  return db("operators").where({ email }).first();
}

/** Inserts an operator; answers undefined when the e-mail is taken. */
export async function insertOperator(
  db: Knex,
  operator: { id: string; email: string; passwordHash: string; role: RoleName; scope: ServerScope; mustChangePassword: boolean; createdBy: string },
): Promise<OperatorRow | undefined> {
  const [row] = await db("operators")
    .insert({
      id: operator.id,
      email: operator.email,
      password_hash: operator.passwordHash,
      role: operator.role,
      ...scopeColumns(operator.scope),
      temporary_login: operator.mustChangePassword,
      created_by: operator.createdBy,
    })
    .onConflict("email")
    .ignore()
    .returning("*");
  return row;
}

export async function updateOperatorAccess(db: Knex, id: string, role: RoleName, scope: ServerScope): Promise<OperatorRow | undefined> {
  const [row] = await db("operators")
    .where({ id })
    .update({ role, ...scopeColumns(scope) })
    .returning("*");
  return row;
}

export async function updateOperatorDisabled(db: Knex, id: string, disabled: boolean): Promise<OperatorRow | undefined> {
  const [row] = await db("operators")
    .where({ id })
    .update({ disabled_at: disabled ? db.raw("coalesce(disabled_at, now())") : null })
    .returning("*");
  return row;
}

/** Sets a password hash; `mustChange` for one-time passwords. Answers the row (undefined: no such operator). */
export async function updateOperatorPassword(db: Knex, id: string, passwordHash: string, mustChange: boolean): Promise<OperatorRow | undefined> {
  const [row] = await db("operators")
    .where({ id })
    .update({ password_hash: passwordHash, temporary_login: mustChange, login_changed_at: db.fn.now() })
    .returning("*");
  return row;
}

export async function deleteOperator(db: Knex, id: string): Promise<boolean> {
  return (await db("operators").where({ id }).delete()) === 1;
}

/**
 * Owners that are enabled, locked for the rest of the transaction: the last-owner rule is checked
 * and kept under this lock, so two admins cannot demote the last two owners at once.
 */
export async function lockActiveOwners(db: Knex): Promise<string[]> {
  const rows = await db("operators").where({ role: "owner" }).whereNull("disabled_at").forUpdate().select("id");
  return rows.map((r: { id: string }) => r.id);
}

export async function recordLogin(db: Knex, id: string): Promise<void> {
  await db("operators").where({ id }).update({ last_login_at: db.fn.now() });
}

/** Failed logins per subject within the last `seconds`, the highest of the subjects. */
export async function recentLoginFailures(db: Knex, subjects: readonly string[], seconds: number): Promise<number> {
  const rows = await db("operator_login_failures")
    .whereIn("subject", [...subjects])
    .where("at", ">", db.raw("now() - make_interval(secs => ?)", [seconds]))
    .groupBy("subject")
    .select("subject")
    .count<Array<{ subject: string; count: string }>>("* as count");
  return Math.max(0, ...rows.map((r) => Number(r.count)));
}

export async function insertLoginFailures(db: Knex, subjects: readonly string[]): Promise<void> {
  await db("operator_login_failures").insert(subjects.map((subject) => ({ subject })));
}

export async function deleteOldLoginFailures(db: Knex, olderThanSeconds: number): Promise<number> {
  return db("operator_login_failures")
    .where("at", "<", db.raw("now() - make_interval(secs => ?)", [olderThanSeconds]))
    .delete();
}

export interface SessionRow {
  id: string;
  operator_id: string;
  created_at: Date;
  last_seen_at: Date;
  expires_at: Date;
  ip: string;
  user_agent: string;
}

export async function insertSession(
  db: Knex,
  session: { id: string; tokenHash: string; operatorId: string; lifetimeSeconds: number; ip: string; userAgent: string },
): Promise<SessionRow> {
  const [row] = await db("operator_sessions")
    .insert({
      id: session.id,
      token_hash: session.tokenHash,
      operator_id: session.operatorId,
      expires_at: db.raw("now() + make_interval(secs => ?)", [session.lifetimeSeconds]),
      ip: session.ip,
      user_agent: session.userAgent,
    })
    .returning(["id", "operator_id", "created_at", "last_seen_at", "expires_at", "ip", "user_agent"]);
  return row;
}

/**
 * The live session of a token hash with its operator, in one statement. Expired sessions (idle or
 * absolute) and those of disabled operators answer nothing.
 */
export async function selectLiveSession(db: Knex, tokenHash: string, idleSeconds: number): Promise<{ session: SessionRow; operator: OperatorRow } | undefined> {
  const row = await db("operator_sessions as s")
    .join("operators as o", "o.id", "s.operator_id")
    .where("s.token_hash", tokenHash)
    .where("s.expires_at", ">", db.fn.now())
    .where("s.last_seen_at", ">", db.raw("now() - make_interval(secs => ?)", [idleSeconds]))
    .whereNull("o.disabled_at")
    .first(
      { session_id: "s.id", session_created_at: "s.created_at", last_seen_at: "s.last_seen_at", expires_at: "s.expires_at", session_ip: "s.ip" },
      { user_agent: "s.user_agent" },
      "o.*",
    );
  if (!row) return undefined;
  const { session_id, session_created_at, last_seen_at, expires_at, session_ip, user_agent, ...operator } = row;
  return {
    session: { id: session_id, operator_id: operator.id, created_at: session_created_at, last_seen_at, expires_at, ip: session_ip, user_agent },
    operator: operator as OperatorRow,
  };
}

/** Moves a session's idle clock to now. */
export async function touchSession(db: Knex, id: string): Promise<Date> {
  const [row] = await db("operator_sessions").where({ id }).update({ last_seen_at: db.fn.now() }).returning("last_seen_at");
  return row?.last_seen_at ?? new Date();
}

export async function selectSessions(db: Knex, operatorId: string, idleSeconds: number): Promise<Array<SessionRow & { operator_email: string }>> {
  return db("operator_sessions as s")
    .join("operators as o", "o.id", "s.operator_id")
    .where("s.operator_id", operatorId)
    .where("s.expires_at", ">", db.fn.now())
    .where("s.last_seen_at", ">", db.raw("now() - make_interval(secs => ?)", [idleSeconds]))
    .orderBy("s.created_at", "desc")
    .select("s.id", "s.operator_id", "s.created_at", "s.last_seen_at", "s.expires_at", "s.ip", "s.user_agent", { operator_email: "o.email" });
}

export async function selectSession(db: Knex, id: string): Promise<SessionRow | undefined> {
  return db("operator_sessions").where({ id }).first("id", "operator_id", "created_at", "last_seen_at", "expires_at", "ip", "user_agent");
}

export async function deleteSession(db: Knex, id: string): Promise<boolean> {
  return (await db("operator_sessions").where({ id }).delete()) === 1;
}

/** Ends an operator's sessions, except `keep` (the one that changed the password). */
export async function deleteOperatorSessions(db: Knex, operatorId: string, keep?: string): Promise<number> {
  const query = db("operator_sessions").where({ operator_id: operatorId });
  if (keep) query.whereNot({ id: keep });
  return query.delete();
}

export async function deleteExpiredSessions(db: Knex, idleSeconds: number): Promise<number> {
  return db("operator_sessions")
    .where("expires_at", "<=", db.fn.now())
    .orWhere("last_seen_at", "<=", db.raw("now() - make_interval(secs => ?)", [idleSeconds]))
    .delete();
}

export interface ApiClientRow {
  id: string;
  name: string;
  description: string;
  role: RoleName;
  scope_server_ids: string[];
  scope_tags: string[];
  secret: string;
  previous_secret: string | null;
  previous_valid_until: Date | null;
  revoked_at: Date | null;
  owner_id: string | null;
  created_by: string;
  created_at: Date;
  rotated_at: Date | null;
  last_used_at: Date | null;
}

export async function insertApiClient(
  db: Knex,
  client: { id: string; name: string; description: string; role: RoleName; scope: ServerScope; secret: string; ownerId?: string; createdBy: string },
): Promise<ApiClientRow | undefined> {
  const [row] = await db("api_clients")
    .insert({
      id: client.id,
      name: client.name,
      description: client.description,
      role: client.role,
      ...scopeColumns(client.scope),
      secret: client.secret,
      owner_id: client.ownerId ?? null,
      created_by: client.createdBy,
    })
    .onConflict("name")
    .ignore()
    .returning("*");
  return row;
}

/** API clients, all or those acting for `ownerId`. */
export async function selectApiClients(db: Knex, ownerId?: string): Promise<ApiClientRow[]> {
  const query = db("api_clients").orderBy("name");
  if (ownerId !== undefined) query.where({ owner_id: ownerId });
  return query;
}

/** Revokes every client acting for `ownerId` (a disabled or deleted operator); answers their ids. */
export async function revokeApiClientsOf(db: Knex, ownerId: string): Promise<string[]> {
  const rows = await db("api_clients").where({ owner_id: ownerId }).whereNull("revoked_at").update({ revoked_at: db.fn.now() }).returning("id");
  return rows.map((r: { id: string }) => r.id);
}

/** Lowers the role of clients acting for `ownerId` to at most `role` (their operator was demoted). */
export async function capApiClientRoles(db: Knex, ownerId: string, role: RoleName): Promise<void> {
  const rank = (column: string) => `array_position(array['viewer','operator','admin','owner'], ${column})`;
  await db("api_clients")
    .where({ owner_id: ownerId })
    .whereRaw(`${rank("role")} > ${rank("?::text")}`, [role])
    .update({ role });
}

export async function selectApiClient(db: Knex, id: string): Promise<ApiClientRow | undefined> {
  return db("api_clients").where({ id }).first();
}

export async function selectApiClientByName(db: Knex, name: string): Promise<ApiClientRow | undefined> {
  return db("api_clients").where({ name }).first();
}

/** Replaces the secret; the current one becomes the previous, valid for `overlapSeconds` (0: not at all). */
export async function rotateApiClientSecret(db: Knex, id: string, secret: string, previous: string | null, overlapSeconds: number): Promise<ApiClientRow> {
  const [row] = await db("api_clients")
    .where({ id })
    .update({
      secret,
      previous_secret: overlapSeconds > 0 ? previous : null,
      previous_valid_until: overlapSeconds > 0 ? db.raw("now() + make_interval(secs => ?)", [overlapSeconds]) : null,
      rotated_at: db.fn.now(),
    })
    .returning("*");
  return row;
}

export async function revokeApiClient(db: Knex, id: string): Promise<ApiClientRow | undefined> {
  const [row] = await db("api_clients")
    .where({ id })
    .update({ revoked_at: db.raw("coalesce(revoked_at, now())") })
    .returning("*");
  return row;
}

/** Marks a client used now, at most once a minute (a busy integrator does not write on every call). */
export async function touchApiClient(db: Knex, id: string): Promise<void> {
  await db("api_clients")
    .where({ id })
    .where((q) => q.whereNull("last_used_at").orWhere("last_used_at", "<", db.raw("now() - interval '60 seconds'")))
    .update({ last_used_at: db.fn.now() });
}

/** Filters of the audit log (all optional). */
export interface AuditQuery {
  actor?: string;
  action?: string;
  target?: string;
  since?: Date;
  until?: Date;
  failuresOnly?: boolean;
}

function filteredAudit(db: Knex, filter: AuditQuery) {
  const query = db("audit_log");
  if (filter.actor) query.where((q) => q.where("actor_id", filter.actor!).orWhere("actor_name", filter.actor!));
  if (filter.action) {
    if (filter.action.endsWith(".")) query.where("action", "like", `${filter.action.replace(/[\\%_]/g, "\\$&")}%`);
    else query.where("action", filter.action);
  }
  if (filter.target) query.where("target", "like", `%${filter.target.replace(/[\\%_]/g, "\\$&")}%`);
  if (filter.since) query.where("at", ">=", filter.since);
  if (filter.until) query.where("at", "<", filter.until);
  if (filter.failuresOnly) query.whereNot("outcome", "ok");
  return query;
}

/** A page of audit rows, newest first, before `beforeId` (the cursor). */
export async function selectAuditPage(db: Knex, filter: AuditQuery, limit: number, beforeId?: string) {
  const query = filteredAudit(db, filter).orderBy("id", "desc").limit(limit);
  if (beforeId !== undefined) query.where("id", "<", beforeId);
  return query;
}

/** Matching audit rows, oldest first, after `afterId`, `limit` at a time (the CSV export). */
export async function selectAuditBatch(db: Knex, filter: AuditQuery, limit: number, afterId?: string) {
  const query = filteredAudit(db, filter).orderBy("id", "asc").limit(limit);
  if (afterId !== undefined) query.where("id", ">", afterId);
  return query;
}
