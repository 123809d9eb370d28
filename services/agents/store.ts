import { asReal, insertRows, prepared, type Knex } from "../lib/db.js";

/** A server's status: `new` until an agent registers for it. */
export type ServerStatus = "new" | "pending" | "online" | "unreachable" | "revoked";

/** A server row as the agents service reads it (the agent token still sealed). */
export interface ServerRow {
  id: string;
  name: string;
  status: ServerStatus;
  approved: boolean;
  agent_id: string | null;
  hostname: string | null;
  reported_ip: string | null;
  seen_ip: string | null;
  os: string | null;
  os_version: string | null;
  arch: string | null;
  agent_version: string | null;
  agent_token: string | null;
  registered_at: Date | null;
  last_seen_at: Date | null;
  unreachable_since: Date | null;
  uptime_seconds: string | null;
  tags: string[];
  created_at: Date;
}

export async function selectServerByName(db: Knex, name: string): Promise<ServerRow | undefined> {
  return db("servers").where({ name }).first();
}

export async function selectServer(db: Knex, id: string): Promise<ServerRow | undefined> {
  return db("servers").where({ id }).first();
}

/** The fields the signature check needs, in one primary-key read. */
/** The trust rows of many servers in one query, in the order asked (undefined for an unknown id). */
export async function selectServersTrust(
  db: Knex,
  ids: readonly string[],
): Promise<Array<Pick<ServerRow, "id" | "status" | "approved" | "agent_token"> | undefined>> {
  const rows = await prepared(
    db("servers")
      .select("id", "status", "approved", "agent_token")
      .whereRaw("id = any(?::uuid[])", [[...new Set(ids)]]),
    "servers_trust",
  );
  const byId = new Map(rows.map((r: ServerRow) => [r.id, r]));
  return ids.map((id) => byId.get(id));
}

/** Creates a server record named `name` unless one exists; answers its id. */
export async function ensureServer(db: Knex, server: { id: string; name: string; createdBy: string }): Promise<string> {
  await db("servers").insert({ id: server.id, name: server.name, created_by: server.createdBy }).onConflict("name").ignore();
  return (await selectServerByName(db, server.name))!.id;
}

export async function insertInstallToken(db: Knex, token: { hash: string; serverId: string; createdBy: string; ttlSeconds: number }): Promise<Date> {
  const [row] = await db("install_tokens")
    .insert({
      token_hash: token.hash,
      server_id: token.serverId,
      created_by: token.createdBy,
      expires_at: db.raw("now() + make_interval(secs => ?)", [token.ttlSeconds]),
    })
    .returning("expires_at");
  return row.expires_at as Date;
}

/** An install token with its state computed by the database clock. */
export interface InstallTokenRow {
  token_hash: string;
  server_id: string;
  server_name: string;
  created_by: string;
  created_at: Date;
  expires_at: Date;
  consumed_at: Date | null;
  revoked_at: Date | null;
  state: "issued" | "expired" | "consumed" | "revoked";
}

const tokenState = (db: Knex) =>
  db.raw(`case when t.consumed_at is not null then 'consumed' when t.revoked_at is not null then 'revoked'
    when t.expires_at <= now() then 'expired' else 'issued' end as state`);

export async function selectInstallTokens(db: Knex): Promise<InstallTokenRow[]> {
  return db("install_tokens as t")
    .join("servers as s", "s.id", "t.server_id")
    .select("t.*", { server_name: "s.name" }, tokenState(db))
    .orderBy("t.created_at", "desc");
}

export async function selectInstallToken(db: Knex, hash: string): Promise<InstallTokenRow | undefined> {
  return db("install_tokens as t")
    .join("servers as s", "s.id", "t.server_id")
    .select("t.*", { server_name: "s.name" }, tokenState(db))
    .where("t.token_hash", hash)
    .first();
}

/** Tokens whose hash starts with `prefix` (what `token revoke` and the audit rows show). */
export async function selectInstallTokensByPrefix(db: Knex, prefix: string): Promise<InstallTokenRow[]> {
  return db("install_tokens as t")
    .join("servers as s", "s.id", "t.server_id")
    .select("t.*", { server_name: "s.name" }, tokenState(db))
    .where("t.token_hash", "like", `${prefix}%`);
}

export async function revokeInstallToken(db: Knex, hash: string): Promise<boolean> {
  return (await db("install_tokens").where({ token_hash: hash }).whereNull("consumed_at").whereNull("revoked_at").update({ revoked_at: db.fn.now() })) === 1;
}

/**
 * Consumes install tokens in one statement: of any number of concurrent attempts on one token
 * exactly one gets its server id. Answers the server of each token consumed here, by token hash.
 */
export async function consumeInstallTokens(db: Knex, hashes: string[]): Promise<Map<string, string>> {
  const rows: Array<{ token_hash: string; server_id: string }> = await db("install_tokens")
    .whereRaw("token_hash = any(?::text[])", [hashes] as never)
    .whereNull("consumed_at")
    .whereNull("revoked_at")
    .where("expires_at", ">", db.fn.now())
    .update({ consumed_at: db.fn.now() })
    .returning(["token_hash", "server_id"]);
  return new Map(rows.map((r) => [r.token_hash, r.server_id]));
}

/** What an agent reports when it registers, and its new (sealed) token. */
export interface AgentRegistration {
  agentId: string;
  hostname: string;
  reportedIp: string;
  seenIp: string;
  os: string;
  osVersion: string;
  arch: string;
  agentVersion: string;
  agentToken: string;
  approvalRequired: boolean;
}

/**
 * Records the agents that registered, each on its server with its new (sealed) token, in one
 * statement; answers the rows by server id. A server named twice (two of its tokens used at once)
 * gets one of the two, as when two registrations race.
 */
export async function recordRegistrations(db: Knex, registrations: Array<{ serverId: string; agent: AgentRegistration }>): Promise<Map<string, ServerRow>> {
  const column = <K extends keyof AgentRegistration>(key: K) => registrations.map((r) => r.agent[key]);
  const { rows } = await db.raw(
    `update servers as s set
       agent_id = r.agent_id, hostname = r.hostname, reported_ip = r.reported_ip, seen_ip = r.seen_ip,
       os = r.os, os_version = r.os_version, arch = r.arch, agent_version = r.agent_version, agent_token = r.agent_token,
       -- A server approved once stays approved when its agent re-registers (token rotation).
       approved = case when r.approval_required then s.approved else true end,
       status = case when not r.approval_required or s.approved then 'online' else 'pending' end,
       registered_at = now(), last_seen_at = now(), unreachable_since = null, updated_at = now()
     from unnest(?::uuid[], ?::uuid[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::boolean[])
       as r(server_id, agent_id, hostname, reported_ip, seen_ip, os, os_version, arch, agent_version, agent_token, approval_required)
     where s.id = r.server_id
     returning s.*`,
    [
      registrations.map((r) => r.serverId),
      column("agentId"),
      column("hostname"),
      column("reportedIp"),
      column("seenIp"),
      column("os"),
      column("osVersion"),
      column("arch"),
      column("agentVersion"),
      column("agentToken"),
      column("approvalRequired"),
    ] as never,
  );
  return new Map((rows as ServerRow[]).map((r) => [r.id, r]));
}

export async function approveServer(db: Knex, id: string): Promise<ServerRow | undefined> {
  const [row] = await db("servers")
    .where({ id })
    .whereNot({ status: "revoked" })
    .update({ approved: true, status: db.raw("case when status = 'pending' then 'online' else status end"), updated_at: db.fn.now() })
    .returning("*");
  return row as ServerRow | undefined;
}

/** Revokes a server's agent: its token is dropped, every later call refused. */
export async function revokeServer(db: Knex, id: string): Promise<ServerRow | undefined> {
  const [row] = await db("servers").where({ id }).update({ status: "revoked", agent_token: null, updated_at: db.fn.now() }).returning("*");
  return row as ServerRow | undefined;
}

export async function countActiveServers(db: Knex): Promise<number> {
  const [row] = await db("servers").whereIn("status", ["pending", "online", "unreachable"]).count({ n: "*" });
  return Number(row?.n ?? 0);
}

/** One registration or download attempt for the audit trail. */
export interface Attempt {
  ip: string;
  hashPrefix?: string;
  outcome: "accepted" | "refused";
  reason: string;
}

export async function insertRegistrationAttempt(db: Knex, attempt: Attempt & { serverId?: string; requestId?: string }): Promise<void> {
  await db("registration_attempts").insert({
    ip: attempt.ip,
    hash_prefix: attempt.hashPrefix ?? null,
    outcome: attempt.outcome,
    reason: attempt.reason,
    server_id: attempt.serverId ?? null,
    request_id: attempt.requestId ?? null,
  });
}

export async function insertDownloadAttempt(db: Knex, attempt: Attempt & { artifact: string }): Promise<void> {
  await db("download_attempts").insert({
    ip: attempt.ip,
    hash_prefix: attempt.hashPrefix ?? null,
    outcome: attempt.outcome,
    reason: attempt.reason,
    artifact: attempt.artifact,
  });
}

/**
 * Records an attempt refused by the rate limit: on the row of the same refusal from `ip` within
 * the last minute when there is one (`repeats` + 1), else as a new row.
 */
export async function recordThrottledAttempt(
  db: Knex,
  table: "registration_attempts" | "download_attempts",
  attempt: Attempt & { artifact?: string },
): Promise<void> {
  const { rows } = await db.raw(
    `update ${table} set repeats = repeats + 1, last_at = now()
      where id = (select id from ${table} where ip = ? and reason = ? and at > now() - interval '1 minute' order by id desc limit 1)
      returning id`,
    [attempt.ip, attempt.reason],
  );
  if (rows.length > 0) return;
  await db(table).insert({
    ip: attempt.ip,
    hash_prefix: attempt.hashPrefix ?? null,
    outcome: attempt.outcome,
    reason: attempt.reason,
    ...(table === "download_attempts" ? { artifact: attempt.artifact ?? "(invalid)" } : {}),
  });
}

/** Refused registrations (or downloads) from `ip` within the last minute, repeats included. */
export async function recentFailures(db: Knex, table: "registration_attempts" | "download_attempts", ip: string): Promise<number> {
  const [row] = await db(table)
    .where({ ip, outcome: "refused" })
    .where("at", ">", db.raw("now() - interval '1 minute'"))
    .sum({ n: db.raw("1 + repeats") });
  return Number(row?.n ?? 0);
}

/** A heartbeat as it is written. */
export interface HeartbeatWrite {
  serverId: string;
  at: Date;
  uptimeSeconds: number;
  health: string;
  agentVersion: string;
  load: number[];
  /** The host's resources at this heartbeat, when the agent sent them. */
  host?: { cpuPercent: number; memoryUsedMb: number; memoryTotalMb: number; diskUsedMb: number };
  /** Each synced instance's resources at this heartbeat, by instance name. */
  instances: Array<{
    name: string;
    cpuPercent: number;
    rssMb: number;
    diskMb: number;
    /** Running, pid and uptime now, when the agent sent them (agents before 0.2 do not). */
    runtime?: { running: boolean; pid: number | null; uptimeSeconds: number | null };
  }>;
}

/**
 * Writes many heartbeats in one statement (only moving `last_seen_at` forward). A server that was
 * unreachable comes back online; answers those servers, so exactly one recovery alert is raised.
 */
export async function writeHeartbeats(db: Knex, beats: readonly HeartbeatWrite[]): Promise<Array<{ id: string; name: string }>> {
  if (beats.length === 0) return [];
  const hosts = beats.filter((b) => b.host);
  const readings = beats.flatMap((b) => b.instances.map((i) => ({ serverId: b.serverId, at: b.at.toISOString(), ...i })));
  const runtimes = readings.filter((r) => r.runtime);
  // One statement (one round trip): the servers' update, then the resource readings of the servers
  // it updated (a revoked one is not), an unknown or gone instance's reading skipped. Rows are
  // locked in id order and `for no key update`, as the update itself would: a plain `for update`
  // also waits for the share lock a command's or an instance's foreign key takes on its server,
  // and a fan-out storing commands for every server then deadlocked with heartbeats (seen with two
  // replicas: the change set was refused "conflicting concurrent change").
  // One text whatever the batch's size (the beats as arrays): a prepared statement.
  const result = await prepared(
    db.raw(
      `with beat(id, at, uptime, health, version, load) as (
            select id, at, uptime, health, version, load::real[]
              from unnest(?::uuid[], ?::timestamptz[], ?::bigint[], ?::text[], ?::text[], ?::text[]) as b(id, at, uptime, health, version, load)),
          before as (select s.id, s.status from servers s join beat b on b.id = s.id order by s.id for no key update of s),
          updated as (
            update servers s set
               last_seen_at = greatest(s.last_seen_at, b.at), uptime_seconds = b.uptime, health = b.health,
               agent_version = b.version, load_average = b.load,
               status = case when s.status = 'unreachable' then case when s.approved then 'online' else 'pending' end else s.status end,
               unreachable_since = case when s.status = 'unreachable' then null else s.unreachable_since end
              from beat b, before
             where s.id = b.id and before.id = s.id and s.status <> 'revoked'
            returning s.id, s.name, before.status as previous),
          hosts as (
            insert into host_resource_samples (server_id, at, cpu_percent, memory_used_mb, memory_total_mb, disk_used_mb, load_average)
            select h.server_id, h.at, h.cpu, h.used, h.total, h.disk, b.load
              from unnest(?::uuid[], ?::timestamptz[], ?::float8[], ?::float8[], ?::float8[], ?::float8[]) as h(server_id, at, cpu, used, total, disk)
              join updated u on u.id = h.server_id
              join beat b on b.id = h.server_id),
          instance_readings as (
            insert into resource_samples (instance_id, at, cpu_percent, rss_mb, disk_mb)
            select i.id, r.at, r.cpu, r.rss, r.disk
              from unnest(?::uuid[], ?::text[], ?::timestamptz[], ?::float8[], ?::float8[], ?::float8[]) as r(server_id, name, at, cpu, rss, disk)
              join updated u on u.id = r.server_id
              join instances i on i.server_id = r.server_id and i.name = r.name and i.gone_at is null),
          upgrades as (
            -- An upgrade is done when its agent heartbeats in the version it asked for.
            update commands c set status = 'succeeded', finished_at = now(), failure_code = '',
                   result = 'the agent runs ' || b.version || ' and heartbeats'
              from beat b join updated u on u.id = b.id
             where c.server_id = b.id and c.kind = 'upgrade_agent' and c.status in ('pending', 'delivered') and c.target_version = b.version),
          runtimes as (
            update instances i set running = r.running, pid = r.pid, uptime_seconds = r.uptime
              from unnest(?::uuid[], ?::text[], ?::boolean[], ?::integer[], ?::bigint[]) as r(server_id, name, running, pid, uptime)
              join updated u on u.id = r.server_id
             where i.server_id = r.server_id and i.name = r.name and i.gone_at is null)
     select id, name, previous from updated`,
      [
        beats.map((b) => b.serverId),
        beats.map((b) => b.at.toISOString()),
        beats.map((b) => b.uptimeSeconds),
        beats.map((b) => b.health),
        beats.map((b) => b.agentVersion),
        // Each server's load as an array literal of its own (arrays of arrays must be rectangular).
        beats.map((b) => `{${b.load.map((l) => String(asReal(l))).join(",")}}`),
        hosts.map((b) => b.serverId),
        hosts.map((b) => b.at.toISOString()),
        hosts.map((b) => asReal(b.host!.cpuPercent)),
        hosts.map((b) => asReal(b.host!.memoryUsedMb)),
        hosts.map((b) => asReal(b.host!.memoryTotalMb)),
        hosts.map((b) => asReal(b.host!.diskUsedMb)),
        readings.map((r) => r.serverId),
        readings.map((r) => r.name),
        readings.map((r) => r.at),
        readings.map((r) => asReal(r.cpuPercent)),
        readings.map((r) => asReal(r.rssMb)),
        readings.map((r) => asReal(r.diskMb)),
        runtimes.map((r) => r.serverId),
        runtimes.map((r) => r.name),
        runtimes.map((r) => r.runtime!.running),
        runtimes.map((r) => r.runtime!.pid),
        runtimes.map((r) => r.runtime!.uptimeSeconds),
      ] as unknown as readonly Knex.RawBinding[],
    ),
    "heartbeats",
  );
  return (result.rows as Array<{ id: string; name: string; previous: string }>).filter((r) => r.previous === "unreachable");
}

/** A time the panel could not hear its agents (it was refusing calls): not counted as their silence. */
export interface DeafSpan {
  from: Date;
  to: Date;
}

/**
 * Marks servers not heard from for `silentSeconds` unreachable; answers exactly those. Time in
 * `deaf` (spans that do not overlap) does not count as silence. A server whose row is locked is
 * skipped: its heartbeat is being written (so it is not silent), and waiting for it would lock
 * rows in another order than the heartbeat batch (a deadlock seen at 10,000 agents). The next scan
 * looks again. A row only shared by a foreign key (a command being stored for the server) is not
 * skipped: `for no key update` does not conflict with that.
 */
export async function markUnreachable(
  db: Knex,
  silentSeconds: number,
  deaf: readonly DeafSpan[] = [],
): Promise<Array<{ id: string; name: string; last_seen_at: Date }>> {
  const silent = db("servers as s")
    .select("s.id")
    .whereIn("s.status", ["pending", "online"])
    .where("s.last_seen_at", "<", db.raw("now() - make_interval(secs => ?)", [silentSeconds]))
    .whereRaw(
      `now() - s.last_seen_at - (select coalesce(sum(greatest(least(d.deaf_to, now()) - greatest(d.deaf_from, s.last_seen_at), interval '0')), interval '0')
                                   from unnest(?::timestamptz[], ?::timestamptz[]) as d(deaf_from, deaf_to)) >= make_interval(secs => ?)`,
      [deaf.map((d) => d.from.toISOString()), deaf.map((d) => d.to.toISOString()), silentSeconds] as unknown as readonly Knex.RawBinding[],
    )
    .orderBy("s.id")
    .forNoKeyUpdate()
    .skipLocked();
  return db("servers")
    .whereIn("id", silent)
    .update({ status: "unreachable", unreachable_since: db.fn.now(), updated_at: db.fn.now() })
    .returning(["id", "name", "last_seen_at"]);
}

export async function insertAlerts(db: Knex, alerts: ReadonlyArray<{ serverId: string; kind: string; message: string }>): Promise<number[]> {
  if (alerts.length === 0) return [];
  // When a whole fleet goes quiet at once, one statement would pass PostgreSQL's parameter limit.
  const rows = await db.transaction((trx) =>
    insertRows<{ id: string | number }>(
      trx,
      "alerts",
      alerts.map((a) => ({ server_id: a.serverId, kind: a.kind, message: a.message })),
      ["id"],
    ),
  );
  return rows.map((r: { id: string | number }) => Number(r.id));
}

/** The alerts among `ids` not yet e-mailed, oldest first. */
export async function selectAlertsToEmail(db: Knex, ids: readonly number[]): Promise<Array<{ id: number; kind: string; message: string; raised_at: Date }>> {
  return db("alerts")
    .whereRaw("id = any(?::bigint[])", [[...ids]])
    .whereNull("emailed_at")
    .orderBy("id")
    .select("id", "kind", "message", "raised_at")
    .then((rows: Array<{ id: string; kind: string; message: string; raised_at: Date }>) => rows.map((r) => ({ ...r, id: Number(r.id) })));
}

/** Records that the alerts were e-mailed, or why the last attempt failed. */
export async function markAlertsEmailed(db: Knex, ids: readonly number[], error?: string): Promise<void> {
  await db("alerts")
    .whereRaw("id = any(?::bigint[])", [[...ids]])
    .update(error ? { email_error: error } : { emailed_at: db.fn.now(), email_error: null });
}
