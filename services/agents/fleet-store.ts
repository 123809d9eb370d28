import type { Knex } from "../lib/db.js";
import { isScoped, type ServerScope } from "../lib/principal.js";
import type { ServerRow, ServerStatus } from "./store.js";

/** The operator's view of the fleet: servers filtered, scoped and paged (ServerService). */

/** Limits `query` (over `servers` as `alias`) to the servers of `scope`. */
export function whereInScope<T extends Knex.QueryBuilder>(query: T, scope: ServerScope, alias = "servers"): T {
  if (!isScoped(scope)) return query;
  return query.where((q) => {
    if (scope.serverIds.length > 0) q.orWhereIn(`${alias}.id`, [...scope.serverIds]);
    if (scope.tags.length > 0) q.orWhereRaw(`${alias}.tags && ?::text[]`, [[...scope.tags]]);
  }) as T;
}

export interface ServerFilter {
  statuses?: readonly ServerStatus[];
  /** Servers carrying every one of these. */
  tags?: readonly string[];
  /** Substring of name, hostname or addresses, any case. */
  query?: string;
  name?: string;
}

/** Where the text search looks: the expression the trigram index `servers_search` covers. */
const searchable = "lower(name || ' ' || coalesce(hostname, '') || ' ' || coalesce(seen_ip, '') || ' ' || coalesce(reported_ip, ''))";

function filtered(db: Knex, scope: ServerScope, filter: ServerFilter) {
  const query = whereInScope(db("servers"), scope);
  if (filter.statuses?.length) query.whereIn("status", [...filter.statuses]);
  if (filter.tags?.length) query.whereRaw("tags @> ?::text[]", [[...filter.tags]]);
  if (filter.query) query.whereRaw(`${searchable} like ?`, [`%${filter.query.toLowerCase().replace(/[\\%_]/g, "\\$&")}%`]);
  if (filter.name) query.where("name", filter.name);
  return query;
}

/** One page of servers in name order after the cursor `afterName`, and how many match in all. */
export async function selectServerPage(
  db: Knex,
  scope: ServerScope,
  filter: ServerFilter,
  limit: number,
  afterName?: string,
): Promise<{ rows: ServerRow[]; total: number }> {
  const page = filtered(db, scope, filter).orderBy("name").limit(limit).select("*");
  if (afterName !== undefined) page.where("name", ">", afterName);
  const [rows, [count]] = await Promise.all([page, filtered(db, scope, filter).count<Array<{ n: string }>>({ n: "*" })]);
  return { rows, total: Number(count?.n ?? 0) };
}

export interface ServerCounts {
  total: number;
  new: number;
  pending: number;
  online: number;
  unreachable: number;
  revoked: number;
}

/** Servers in scope (and carrying every tag of `tags`) counted per status, and in all. */
export async function countServersByStatus(db: Knex, scope: ServerScope, tags: readonly string[]): Promise<ServerCounts> {
  const rows = await filtered(db, scope, { tags }).groupBy("status").select("status").count<Array<{ status: ServerStatus; n: string }>>({ n: "*" });
  const counts: ServerCounts = { total: 0, new: 0, pending: 0, online: 0, unreachable: 0, revoked: 0 };
  for (const r of rows) {
    counts[r.status] = Number(r.n);
    counts.total += Number(r.n);
  }
  return counts;
}

/** Servers of `ids` that are in scope (others are left out, as if they did not exist). */
export async function selectServersInScope(db: Knex, scope: ServerScope, ids: readonly string[]): Promise<ServerRow[]> {
  if (ids.length === 0) return [];
  return whereInScope(db("servers"), scope).whereIn("id", [...ids]);
}

/** Instances reported now (not gone) and how many run, per server of `ids`. */
export async function countInstances(db: Knex, ids: readonly string[]): Promise<Map<string, { total: number; running: number }>> {
  if (ids.length === 0) return new Map();
  const rows = await db("instances")
    .whereIn("server_id", [...ids])
    .whereNull("gone_at")
    .groupBy("server_id")
    .select("server_id", db.raw("count(*)::int as total"), db.raw("(count(*) filter (where running))::int as running"));
  return new Map(rows.map((r: { server_id: string; total: number; running: number }) => [r.server_id, { total: r.total, running: r.running }]));
}

export interface InstanceSummaryRow {
  id: string;
  name: string;
  version: string;
  running: boolean;
  pid: number | null;
  uptime_seconds: string | null;
  reader_count: number;
  problems: string[];
  synced_at: Date;
}

export async function selectServerInstances(db: Knex, serverId: string): Promise<InstanceSummaryRow[]> {
  return db("instances")
    .where({ server_id: serverId })
    .whereNull("gone_at")
    .orderBy("name")
    .select("id", "name", "version", "running", "pid", "uptime_seconds", "reader_count", "problems", "synced_at");
}

export interface HostReadingRow {
  at: Date;
  cpu_percent: number;
  memory_used_mb: number;
  memory_total_mb: number;
  disk_used_mb: number;
  load_average: number[];
}

export async function selectLatestHostReading(db: Knex, serverId: string): Promise<HostReadingRow | undefined> {
  return db("host_resource_samples").where({ server_id: serverId }).orderBy("at", "desc").first();
}

/** Creates a server record; undefined when the name is taken. */
export async function insertServer(db: Knex, server: { id: string; name: string; tags: readonly string[]; createdBy: string }): Promise<ServerRow | undefined> {
  const [row] = await db("servers")
    .insert({ id: server.id, name: server.name, tags: [...server.tags], created_by: server.createdBy })
    .onConflict("name")
    .ignore()
    .returning("*");
  return row;
}

/** Adds and removes tags on servers of `ids`; answers the rows as they are now. */
export async function updateServerTags(db: Knex, ids: readonly string[], add: readonly string[], remove: readonly string[]): Promise<ServerRow[]> {
  return db("servers")
    .whereIn("id", [...ids])
    .update({
      tags: db.raw("array(select distinct t from unnest(tags || ?::text[]) as t where t <> all(?::text[]) order by t)", [[...add], [...remove]]),
      updated_at: db.fn.now(),
    })
    .returning("*");
}

export async function deleteServer(db: Knex, id: string): Promise<boolean> {
  return (await db("servers").where({ id }).delete()) === 1;
}

/** Commands in scope, newest first, before the cursor (created_at, id). */
export async function selectCommandPage(
  db: Knex,
  scope: ServerScope,
  filter: { serverId?: string; statuses?: readonly string[]; kind?: string },
  limit: number,
  before?: { createdAt: string; id: string },
) {
  const query = whereInScope(db("commands as c").join("servers as servers", "servers.id", "c.server_id"), scope)
    .orderBy([
      { column: "c.created_at", order: "desc" },
      { column: "c.id", order: "desc" },
    ])
    .limit(limit)
    // The cursor keeps PostgreSQL's microseconds (a JavaScript Date would drop them, and with them
    // the commands one transaction created together).
    .select("c.*", { server_name: "servers.name" }, db.raw("c.created_at::text as cursor_at"));
  if (filter.serverId) query.where("c.server_id", filter.serverId);
  if (filter.statuses?.length) query.whereIn("c.status", [...filter.statuses]);
  if (filter.kind) query.where("c.kind", filter.kind);
  if (before) query.whereRaw("(c.created_at, c.id) < (?::timestamptz, ?::uuid)", [before.createdAt, before.id]);
  return query;
}

/** Commands of `ids` in scope, with their server's name. */
export async function selectCommandsInScope(db: Knex, scope: ServerScope, ids: readonly string[]) {
  return whereInScope(db("commands as c").join("servers as servers", "servers.id", "c.server_id"), scope)
    .whereIn("c.id", [...ids])
    .select("c.*", { server_name: "servers.name" });
}

export interface FleetCounts {
  instances: { total: number; running: number; webifUnreachable: number };
  accounts: { total: number; expiring: number; expired: number };
}

/**
 * Instances and accounts of the servers in scope (and carrying every tag of `tags`) at a glance:
 * live instances, running or not, WebIF unreachable; accounts of live instances on servers not
 * revoked, expiring within `days` of `today` (enabled ones) or expired, as the account table counts them.
 */
export async function countFleet(db: Knex, scope: ServerScope, tags: readonly string[], today: string, days: number): Promise<FleetCounts> {
  const servers = () => {
    const q = whereInScope(db("servers").select("id"), scope);
    if (tags.length > 0) q.whereRaw("tags @> ?::text[]", [[...tags]]);
    return q;
  };
  const [instances] = await db("instances")
    .whereIn("server_id", servers())
    .whereNull("gone_at")
    .select(
      db.raw("count(*)::int as total"),
      db.raw("(count(*) filter (where running))::int as running"),
      db.raw("(count(*) filter (where coalesce((webif->>'reachable')::boolean, false) = false))::int as webif_unreachable"),
    );
  const [accounts] = await db("accounts as a")
    .join("instances as i", "i.id", "a.instance_id")
    .whereIn("i.server_id", servers().whereNot("status", "revoked"))
    .whereNull("i.gone_at")
    .select(
      db.raw("count(*)::int as total"),
      db.raw(
        "(count(*) filter (where a.enabled and a.unreadable_expiry = '' and a.expiry_date >= ?::date and a.expiry_date <= ?::date + ?::integer))::int as expiring",
        [today, today, days],
      ),
      db.raw("(count(*) filter (where a.enabled and (a.unreadable_expiry <> '' or a.expiry_date < ?::date)))::int as expired", [today]),
    );
  return {
    instances: { total: instances?.total ?? 0, running: instances?.running ?? 0, webifUnreachable: instances?.webif_unreachable ?? 0 },
    accounts: { total: accounts?.total ?? 0, expiring: accounts?.expiring ?? 0, expired: accounts?.expired ?? 0 },
  };
}
