import type { Client } from "@connectrpc/connect";
import type { Account } from "../../gen/myosicam/agent/v1/snapshot_pb.js";
import type { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import type { Knex } from "../lib/db.js";
import { badPageToken } from "../lib/paging.js";
import type { ServerScope } from "../lib/principal.js";
import { whereInScope } from "./fleet-store.js";

/** The fleet-wide account table (AccountService): filters, sorts and keyset pages over every synced instance in scope. */

export type AccountStateName = "active" | "disabled" | "expired" | "expiring";

export interface AccountFilterInput {
  serverIds?: readonly string[];
  instanceIds?: readonly string[];
  users?: readonly string[];
  states?: readonly AccountStateName[];
  group?: number;
  caid?: string;
  ident?: string;
  query?: string;
  description?: string;
  expiresBefore?: string;
  expiresAfter?: string;
  changedBy?: string;
  driftedOnly?: boolean;
  /** What "expiring" means (default 7 days). */
  expiringWithinDays?: number;
}

export type AccountSortName = "server" | "user" | "expiry" | "changed";

/** An account row with its server and instance, as the table shows it. */
export interface AccountRow {
  id: string;
  instance_id: string;
  instance_name: string;
  server_id: string;
  server_name: string;
  username: string;
  password: string | null;
  enabled: boolean;
  groups: number[];
  caid: string;
  ident: string;
  expiry_date: string | null;
  unreadable_expiry: string;
  description: string;
  extra: Array<{ key: string; value: string }>;
  changed_at: Date;
  changed_by: string;
  change_set_id: string | null;
  drifted: boolean;
  state: AccountStateName;
  /** The sort key values as text, for the page cursor. */
  cursor?: string[];
}

/** Today's date where the panel runs (YYYY-MM-DD, local time), the day OScam's expiry is read against. */
export function localDate(now = new Date()): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

/**
 * The effective state as OScam decides it (OSCAM.md §3): disabled wins; an expdate is valid
 * through the end of its day, and one OScam cannot read counts as expired.
 */
const stateSql = `case when not a.enabled then 'disabled'
  when a.unreadable_expiry <> '' or a.expiry_date < ?::date then 'expired'
  when a.expiry_date <= ?::date + ?::integer then 'expiring'
  else 'active' end`;

const escapeLike = (text: string) => text.toLowerCase().replace(/[\\%_]/g, "\\$&");

/** Accounts of live instances on servers in scope, joined with their server and instance, filtered. */
export function filteredAccounts(db: Knex, scope: ServerScope, filter: AccountFilterInput, today: string) {
  const days = filter.expiringWithinDays || 7;
  const query = db("accounts as a")
    .join("instances as i", "i.id", "a.instance_id")
    .join("servers as s", "s.id", "i.server_id")
    .whereNull("i.gone_at")
    .whereNot("s.status", "revoked");
  whereInScope(query, scope, "s");
  if (filter.serverIds?.length) query.whereIn("s.id", [...filter.serverIds]);
  if (filter.instanceIds?.length) query.whereIn("i.id", [...filter.instanceIds]);
  if (filter.users?.length) query.whereIn("a.username", [...filter.users]);
  if (filter.states?.length) query.whereRaw(`(${stateSql}) = any(?::text[])`, [today, today, days, [...filter.states]]);
  if (filter.group) query.whereRaw("? = any(a.groups)", [filter.group]);
  // The caid list names the CAID (an entry may carry &mask or :target after it).
  if (filter.caid) query.whereRaw("a.caid ~* ?", [`(^|,)\\s*${filter.caid}([&:,\\s]|$)`]);
  if (filter.ident) query.whereRaw("lower(a.ident) like ?", [`%${escapeLike(filter.ident)}%`]);
  if (filter.query) query.whereRaw("lower(a.username || ' ' || a.description) like ?", [`%${escapeLike(filter.query)}%`]);
  if (filter.description) query.whereRaw("lower(a.description) like ?", [`%${escapeLike(filter.description)}%`]);
  if (filter.expiresBefore) query.where("a.expiry_date", "<=", filter.expiresBefore);
  if (filter.expiresAfter) query.where("a.expiry_date", ">=", filter.expiresAfter);
  if (filter.changedBy) query.where("a.changed_by", filter.changedBy);
  if (filter.driftedOnly) query.where("a.drifted", true);
  return query;
}

/** The sort expressions of each order (each ends with the row id, so the order is total). */
const sortKeys: Record<AccountSortName, Array<{ expr: string; type: string }>> = {
  server: [
    { expr: "s.name", type: "text" },
    { expr: "i.name", type: "text" },
    { expr: "a.username", type: "text" },
    { expr: "a.id", type: "uuid" },
  ],
  user: [
    { expr: "a.username", type: "text" },
    { expr: "a.id", type: "uuid" },
  ],
  expiry: [
    { expr: "coalesce(a.expiry_date, '9999-12-31'::date)", type: "date" },
    { expr: "a.id", type: "uuid" },
  ],
  changed: [
    { expr: "a.changed_at", type: "timestamptz" },
    { expr: "a.id", type: "uuid" },
  ],
};

/** The columns an account row is answered with. */
function selectRow(db: Knex, query: Knex.QueryBuilder, today: string, days: number, sort: AccountSortName) {
  const keys = sortKeys[sort];
  return query.select(
    "a.id",
    "a.instance_id",
    "i.name as instance_name",
    "s.id as server_id",
    "s.name as server_name",
    "a.username",
    "a.password",
    "a.enabled",
    "a.groups",
    "a.caid",
    "a.ident",
    db.raw("to_char(a.expiry_date, 'YYYY-MM-DD') as expiry_date"),
    "a.unreadable_expiry",
    "a.description",
    "a.extra",
    "a.changed_at",
    "a.changed_by",
    "a.change_set_id",
    "a.drifted",
    db.raw(`${stateSql} as state`, [today, today, days]),
    db.raw(`array[${keys.map((k) => `(${k.expr})::text`).join(", ")}] as cursor`),
  );
}

export const encodeAccountCursor = (values: readonly string[]) => Buffer.from(JSON.stringify(values)).toString("base64url");

function decodeCursor(token: string, sort: AccountSortName): string[] | undefined {
  if (token === "") return undefined;
  try {
    const values = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as unknown;
    if (!Array.isArray(values) || values.length !== sortKeys[sort].length || !values.every((v) => typeof v === "string" && v.length <= 300)) {
      throw new Error("bad cursor");
    }
    return values as string[];
  } catch {
    throw badPageToken();
  }
}

/** One page of accounts after the cursor, and how many match in all. */
export async function selectAccountPage(
  db: Knex,
  scope: ServerScope,
  filter: AccountFilterInput,
  options: { sort: AccountSortName; descending: boolean; limit: number; pageToken: string; today: string; withTotal?: boolean },
): Promise<{ rows: AccountRow[]; total: number }> {
  const keys = sortKeys[options.sort];
  const after = decodeCursor(options.pageToken, options.sort);
  const order = (query: Knex.QueryBuilder) => {
    for (const k of keys) query.orderByRaw(`${k.expr} ${options.descending ? "desc" : "asc"}`);
    return query;
  };
  // The page's ids first, sorted over narrow rows; the answer's columns (state, cursor, …) are
  // then computed for those rows only, not for every row the sort reads.
  const ids = order(filteredAccounts(db, scope, filter, options.today).select("a.id")).limit(options.limit);
  if (after) {
    ids.whereRaw(`(${keys.map((k) => k.expr).join(", ")}) ${options.descending ? "<" : ">"} (${keys.map((k) => `?::${k.type}`).join(", ")})`, after);
  }
  const page = order(
    selectRow(
      db,
      db("accounts as a").join("instances as i", "i.id", "a.instance_id").join("servers as s", "s.id", "i.server_id").whereIn("a.id", ids),
      options.today,
      filter.expiringWithinDays || 7,
      options.sort,
    ),
  );
  const count =
    options.withTotal === false ? Promise.resolve([{ n: "0" }]) : filteredAccounts(db, scope, filter, options.today).count<Array<{ n: string }>>({ n: "*" });
  const [rows, [total]] = await Promise.all([page, count]);
  return { rows: rows as AccountRow[], total: Number(total?.n ?? 0) };
}

/** Every account matching the filter (a change set's selection), at most `limit`. */
export async function selectMatchingAccounts(db: Knex, scope: ServerScope, filter: AccountFilterInput, today: string, limit: number): Promise<AccountRow[]> {
  return (await selectRow(db, filteredAccounts(db, scope, filter, today), today, filter.expiringWithinDays || 7, "server")
    .orderBy(["s.name", "i.name", "a.username"])
    .limit(limit)) as AccountRow[];
}

/** Accounts by (instance, user) in scope; keys outside scope or unknown are simply absent. */
export async function selectAccountsByKey(
  db: Knex,
  scope: ServerScope,
  keys: ReadonlyArray<{ instanceId: string; user: string }>,
  today: string,
): Promise<AccountRow[]> {
  if (keys.length === 0) return [];
  const query = filteredAccounts(db, scope, {}, today).whereRaw("(a.instance_id, a.username) in (select * from unnest(?::uuid[], ?::text[]))", [
    keys.map((k) => k.instanceId),
    keys.map((k) => k.user),
  ] as unknown as Knex.RawBinding[]);
  return (await selectRow(db, query, today, 7, "server")) as AccountRow[];
}

/** One account in scope by id, or undefined. */
export async function selectAccountById(db: Knex, scope: ServerScope, id: string, today: string): Promise<AccountRow | undefined> {
  const [row] = await selectRow(db, filteredAccounts(db, scope, {}, today).where("a.id", id), today, 7, "server");
  return row as AccountRow | undefined;
}

/** A live instance of a server in scope, with names; undefined when unknown or out of scope. */
export interface InstanceTarget {
  id: string;
  name: string;
  server_id: string;
  server_name: string;
}

export async function selectInstanceTargets(db: Knex, scope: ServerScope, ids: readonly string[]): Promise<InstanceTarget[]> {
  if (ids.length === 0) return [];
  const query = db("instances as i")
    .join("servers as s", "s.id", "i.server_id")
    .whereIn("i.id", [...ids])
    .whereNull("i.gone_at")
    .whereNot("s.status", "revoked")
    .select("i.id", "i.name", "s.id as server_id", "s.name as server_name");
  return whereInScope(query, scope, "s");
}

/** Live instances in scope by server and instance name (CSV import). */
export async function selectInstancesByName(db: Knex, scope: ServerScope): Promise<InstanceTarget[]> {
  const query = db("instances as i")
    .join("servers as s", "s.id", "i.server_id")
    .whereNull("i.gone_at")
    .whereNot("s.status", "revoked")
    .select("i.id", "i.name", "s.id as server_id", "s.name as server_name");
  return whereInScope(query, scope, "s");
}

/** Usernames present now on each of the instances (to refuse a creation of an existing account). */
export async function selectExistingUsers(db: Knex, pairs: ReadonlyArray<{ instanceId: string; user: string }>): Promise<Set<string>> {
  if (pairs.length === 0) return new Set();
  const { rows } = await db.raw(
    "select a.instance_id, a.username from accounts a join unnest(?::uuid[], ?::text[]) as k(instance_id, username) on a.instance_id = k.instance_id and a.username = k.username",
    [pairs.map((p) => p.instanceId), pairs.map((p) => p.user)] as unknown as Knex.RawBinding[],
  );
  return new Set((rows as Array<{ instance_id: string; username: string }>).map((r) => `${r.instance_id}\u0000${r.username}`));
}

/** Clears the drift marks of an instance; answers how many accounts were marked. */
export async function acknowledgeDrift(db: Knex, instanceId: string): Promise<number> {
  await db("instances").where({ id: instanceId }).update({ drift_acknowledged_at: db.fn.now() });
  return db("accounts").where({ instance_id: instanceId, drifted: true }).update({ drifted: false });
}

/** Accounts changed outside the panel since the last acknowledgement, per instance of `ids`. */
export async function countDriftedAccounts(db: Knex, ids: readonly string[]): Promise<Map<string, number>> {
  if (ids.length === 0) return new Map();
  const rows = await db("account_history as h")
    .join("instances as i", "i.id", "h.instance_id")
    .whereIn("h.instance_id", [...ids])
    .where("h.source", "outside")
    .whereRaw("h.at > coalesce(i.drift_acknowledged_at, '-infinity')")
    .groupBy("h.instance_id")
    .select("h.instance_id", db.raw("count(distinct h.username)::int as n"));
  return new Map(rows.map((r: { instance_id: string; n: number }) => [r.instance_id, r.n]));
}

/**
 * Stores accounts as an agent reported them (a snapshot's, or those a change's result shows),
 * each under its row `id` on its instance: passwords sealed through CryptoService in one batch (an
 * unchanged one comes back as the stored envelope `current`, so its row is not rewritten). One
 * statement for every account, columns passed as arrays (unnest): far cheaper than thousands of
 * bound row values. Rows whose values did not change are left alone (and keep their updated_at).
 * `alongside` is a statement run in the same one. Answers each row's password as stored.
 */
export async function upsertReportedAccounts(
  trx: Knex,
  crypto: Client<typeof CryptoService>,
  rows: ReadonlyArray<{ id: string; instanceId: string; current: string; account: Account }>,
  alongside?: { sql: string; bindings: readonly unknown[] },
): Promise<Array<string | null>> {
  const sealed = rows.some((r) => r.account.password)
    ? (
        await crypto.encryptBatch({
          items: rows
            .filter((r) => r.account.password)
            .map((r) => ({
              plaintext: Buffer.from(r.account.password, "utf8"),
              context: { table: "accounts", column: "password", rowId: r.id },
              current: r.current,
            })),
        })
      ).envelopes
    : [];
  let next = 0;
  const passwords = rows.map((r) => (r.account.password ? sealed[next++]! : null));
  if (rows.length === 0) {
    if (alongside) await trx.raw(alongside.sql, alongside.bindings as Knex.RawBinding[]);
    return passwords;
  }
  const upsert = `insert into accounts (id, instance_id, username, password, enabled, groups, caid, ident, expiry_date, unreadable_expiry, description, extra, updated_at)
    select a.id, a.instance_id, a.username, a.password, a.enabled, coalesce(string_to_array(a.groups, ',')::integer[], '{}'), a.caid, a.ident, a.expiry_date, a.unreadable_expiry, a.description, a.extra, now()
      from unnest(?::uuid[], ?::uuid[], ?::text[], ?::text[], ?::boolean[], ?::text[], ?::text[], ?::text[], ?::date[], ?::text[], ?::text[], ?::jsonb[])
        as a(id, instance_id, username, password, enabled, groups, caid, ident, expiry_date, unreadable_expiry, description, extra)
    on conflict (instance_id, username) do update set password = excluded.password, enabled = excluded.enabled, groups = excluded.groups,
      caid = excluded.caid, ident = excluded.ident, expiry_date = excluded.expiry_date, unreadable_expiry = excluded.unreadable_expiry,
      description = excluded.description, extra = excluded.extra, updated_at = excluded.updated_at
    where (accounts.password, accounts.enabled, accounts.groups, accounts.caid, accounts.ident, accounts.expiry_date, accounts.unreadable_expiry, accounts.description, accounts.extra)
      is distinct from (excluded.password, excluded.enabled, excluded.groups, excluded.caid, excluded.ident, excluded.expiry_date, excluded.unreadable_expiry, excluded.description, excluded.extra)`;
  await trx.raw(alongside ? `with upserted as (${upsert}) ${alongside.sql}` : upsert, [
    rows.map((r) => r.id),
    rows.map((r) => r.instanceId),
    rows.map((r) => r.account.user),
    passwords,
    rows.map((r) => r.account.enabled),
    rows.map((r) => r.account.groups.join(",")),
    rows.map((r) => r.account.caid),
    rows.map((r) => r.account.ident),
    rows.map((r) => r.account.expiryDate || null),
    rows.map((r) => r.account.unreadableExpiry),
    rows.map((r) => r.account.description),
    rows.map((r) => JSON.stringify(r.account.extra.map((x) => ({ key: x.key, value: x.value })))),
    ...(alongside?.bindings ?? []),
  ] as unknown as readonly Knex.RawBinding[]);
  return passwords;
}
