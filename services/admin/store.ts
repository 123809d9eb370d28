import type { Knex } from "../lib/db.js";

/** A caller row as stored (secrets still sealed). */
export interface CallerRow {
  id: string;
  description: string;
  status: "active" | "inactive";
  secret: string;
  previous_secret: string | null;
  previous_valid_until: Date | null;
  /** Whether the previous secret is still within its overlap window (computed by the database clock). */
  previous_valid: boolean;
  allowed_procedures: string[];
  created_at: Date;
  updated_at: Date;
  rotated_at: Date | null;
}

const callerColumns = (db: Knex) => [
  "id",
  "description",
  "status",
  "secret",
  "previous_secret",
  "previous_valid_until",
  db.raw("coalesce(previous_valid_until > now(), false) as previous_valid"),
  "allowed_procedures",
  "created_at",
  "updated_at",
  "rotated_at",
];

export async function selectCaller(db: Knex, id: string): Promise<CallerRow | undefined> {
  return db("callers").select(callerColumns(db)).where({ id }).first();
}

export async function selectCallers(db: Knex): Promise<CallerRow[]> {
  return db("callers").select(callerColumns(db)).orderBy("id");
}

/** Inserts a caller; answers false when the id is taken. `seal` gets the row id for the AAD. */
export async function insertCaller(
  db: Knex,
  caller: { id: string; description: string; secret: string; allowedProcedures: readonly string[] },
): Promise<boolean> {
  const rows = await db("callers")
    .insert({ id: caller.id, description: caller.description, secret: caller.secret, allowed_procedures: caller.allowedProcedures })
    .onConflict("id")
    .ignore()
    .returning("id");
  return rows.length === 1;
}

/** Sets a caller's status; answers false when there is no such caller. */
export async function updateCallerStatus(db: Knex, id: string, status: "active" | "inactive"): Promise<boolean> {
  return (await db("callers").where({ id }).update({ status, updated_at: db.fn.now() })) === 1;
}

/**
 * Installs a new secret, keeping the old one (re-sealed for its column) for `overlapSeconds`, only
 * if the secret is still the one that was read (a concurrent rotation wins, this one reports false).
 */
export async function rotateCallerSecret(
  db: Knex,
  change: { id: string; expectedSecret: string; secret: string; previousSecret: string | null; overlapSeconds: number },
): Promise<boolean> {
  const updated = await db("callers")
    .where({ id: change.id, secret: change.expectedSecret })
    .update({
      secret: change.secret,
      previous_secret: change.previousSecret,
      previous_valid_until: change.previousSecret === null ? null : db.raw("now() + make_interval(secs => ?)", [change.overlapSeconds]),
      rotated_at: db.fn.now(),
      updated_at: db.fn.now(),
    });
  return updated === 1;
}

/** A plan row. */
export interface PlanRow {
  id: string;
  name: string;
  max_servers: number;
  max_instances: number;
  monthly_price_minor: string;
  currency: string;
  features: string[];
  public: boolean;
}

export interface PlanFields {
  id: string;
  name: string;
  maxServers: number;
  maxInstances: number;
  monthlyPriceMinor: bigint;
  currency: string;
  features: readonly string[];
  public: boolean;
}

/** Creates or replaces a plan; licenses on it see the new quotas at their next validation. */
export async function upsertPlan(db: Knex, plan: PlanFields): Promise<void> {
  const columns = {
    name: plan.name,
    max_servers: plan.maxServers,
    max_instances: plan.maxInstances,
    monthly_price_minor: plan.monthlyPriceMinor.toString(),
    currency: plan.currency,
    features: plan.features,
    public: plan.public,
  };
  await db("plans")
    .insert({ id: plan.id, ...columns })
    .onConflict("id")
    .merge({ ...columns, updated_at: db.fn.now() });
}

export async function selectPlans(db: Knex, onlyPublic: boolean): Promise<PlanRow[]> {
  const query = db("plans")
    .select("*")
    .orderBy([{ column: "monthly_price_minor" }, { column: "id" }]);
  if (onlyPublic) query.where({ public: true });
  return query;
}

export async function selectPlan(db: Knex, id: string): Promise<PlanRow | undefined> {
  return db("plans").select("*").where({ id }).first();
}

/** A license row joined with its plan, and whether it has expired by the database clock. */
export interface LicenseRow {
  id: string;
  key_hint: string;
  customer: string;
  plan_id: string;
  status: "active" | "revoked";
  expires_at: Date | null;
  expired: boolean;
  panel_id: string | null;
  created_at: Date;
  revoked_at: Date | null;
  revoked_reason: string | null;
  last_validated_at: Date | null;
  last_usage_servers: number | null;
  last_usage_instances: number | null;
  plan: PlanRow;
}

const licenseQuery = (db: Knex) =>
  db("licenses as l")
    .join("plans as p", "p.id", "l.plan_id")
    .select(
      "l.id",
      "l.key_hint",
      "l.customer",
      "l.plan_id",
      "l.status",
      "l.expires_at",
      db.raw("coalesce(l.expires_at <= now(), false) as expired"),
      "l.panel_id",
      "l.created_at",
      "l.revoked_at",
      "l.revoked_reason",
      "l.last_validated_at",
      "l.last_usage_servers",
      "l.last_usage_instances",
      db.raw("to_jsonb(p.*) as plan"),
    );

export async function selectLicenseByKeyHash(db: Knex, keyHash: string): Promise<LicenseRow | undefined> {
  return licenseQuery(db).where("l.key_hash", keyHash).first();
}

export async function selectLicenses(db: Knex): Promise<LicenseRow[]> {
  return licenseQuery(db).orderBy("l.created_at", "desc");
}

export async function insertLicense(
  db: Knex,
  license: { id: string; keyHash: string; keyHint: string; customer: string; planId: string; expiresAt: Date | null; panelId: string | null },
): Promise<void> {
  await db("licenses").insert({
    id: license.id,
    key_hash: license.keyHash,
    key_hint: license.keyHint,
    customer: license.customer,
    plan_id: license.planId,
    expires_at: license.expiresAt,
    panel_id: license.panelId,
  });
}

/** Revokes an active license; answers false when there is no such active license. */
export async function revokeLicense(db: Knex, id: string, reason: string): Promise<boolean> {
  const updated = await db("licenses")
    .where({ id, status: "active" })
    .update({ status: "revoked", revoked_at: db.fn.now(), revoked_reason: reason, updated_at: db.fn.now() });
  return updated === 1;
}

/**
 * Binds an unbound license to `panelId` (first validation wins) and records the reported usage.
 * Answers the panel the license is bound to afterwards.
 */
export async function recordValidation(db: Knex, id: string, panelId: string, usage: { servers: number; instances: number }): Promise<string> {
  const [row] = await db("licenses")
    .where({ id })
    .update({
      panel_id: db.raw("coalesce(panel_id, ?::uuid)", [panelId]),
      last_validated_at: db.fn.now(),
      last_usage_servers: usage.servers,
      last_usage_instances: usage.instances,
      last_usage_at: db.fn.now(),
    })
    .returning("panel_id");
  return String(row.panel_id);
}

/** Records usage only (ReportUsage). */
export async function recordUsage(db: Knex, id: string, usage: { servers: number; instances: number }): Promise<void> {
  await db("licenses").where({ id }).update({ last_usage_servers: usage.servers, last_usage_instances: usage.instances, last_usage_at: db.fn.now() });
}

/** An admin operator row. */
export interface OperatorRow {
  id: string;
  email: string;
  password_hash: string;
  disabled_at: Date | null;
}

export async function insertOperator(db: Knex, operator: { id: string; email: string; passwordHash: string }): Promise<boolean> {
  const rows = await db("admin_operators")
    .insert({ id: operator.id, email: operator.email, password_hash: operator.passwordHash })
    .onConflict("email")
    .ignore()
    .returning("id");
  return rows.length === 1;
}

export async function updateOperatorPassword(db: Knex, email: string, passwordHash: string): Promise<boolean> {
  return (await db("admin_operators").where({ email }).update({ password_hash: passwordHash, updated_at: db.fn.now() })) === 1;
}

export async function selectOperatorByEmail(db: Knex, email: string): Promise<OperatorRow | undefined> {
  return db("admin_operators").select("id", "email", "password_hash", "disabled_at").where({ email }).first();
}

export async function selectOperators(db: Knex): Promise<Array<{ id: string; email: string; created_at: Date; disabled_at: Date | null }>> {
  return db("admin_operators").select("id", "email", "created_at", "disabled_at").orderBy("email");
}

export async function insertSession(db: Knex, session: { tokenHash: string; operatorId: string; ttlSeconds: number; ip?: string }): Promise<Date> {
  const [row] = await db("admin_sessions")
    .insert({
      token_hash: session.tokenHash,
      operator_id: session.operatorId,
      expires_at: db.raw("now() + make_interval(secs => ?)", [session.ttlSeconds]),
      ip: session.ip ?? null,
    })
    .returning("expires_at");
  return row.expires_at as Date;
}

/** The operator of a live session on an enabled account. */
export async function selectSessionOperator(db: Knex, tokenHash: string): Promise<{ id: string; email: string } | undefined> {
  return db("admin_sessions as s")
    .join("admin_operators as o", "o.id", "s.operator_id")
    .select("o.id", "o.email")
    .where("s.token_hash", tokenHash)
    .where("s.expires_at", ">", db.fn.now())
    .whereNull("o.disabled_at")
    .first();
}

export async function deleteSession(db: Knex, tokenHash: string): Promise<void> {
  await db("admin_sessions").where({ token_hash: tokenHash }).delete();
}

export async function deleteExpiredSessions(db: Knex): Promise<number> {
  return db("admin_sessions").where("expires_at", "<=", db.fn.now()).delete();
}

/** Records a failed login for each subject (`ip:…`, `email:…`). */
export async function insertLoginFailures(db: Knex, subjects: readonly string[]): Promise<void> {
  await db("admin_login_failures").insert(subjects.map((subject) => ({ subject })));
}

/** The largest number of failures any of `subjects` had in the last `windowSeconds`. */
export async function recentLoginFailures(db: Knex, subjects: readonly string[], windowSeconds: number): Promise<number> {
  const rows = (await db("admin_login_failures")
    .select("subject")
    .count({ n: "*" })
    .whereIn("subject", subjects)
    .where("at", ">", db.raw("now() - make_interval(secs => ?)", [windowSeconds]))
    .groupBy("subject")) as Array<{ n: string | number }>;
  return Math.max(0, ...rows.map((r) => Number(r.n)));
}

export async function deleteOldLoginFailures(db: Knex, olderThanSeconds: number): Promise<number> {
  return db("admin_login_failures")
    .where("at", "<", db.raw("now() - make_interval(secs => ?)", [olderThanSeconds]))
    .delete();
}

/** One audit row per mutation (who, what, target, IP, request id). */
export async function insertAudit(db: Knex, entry: { actor: string; action: string; target: string; ip?: string; requestId?: string }): Promise<void> {
  await db("admin_audit").insert({ actor: entry.actor, action: entry.action, target: entry.target, ip: entry.ip ?? null, request_id: entry.requestId ?? null });
}
