import type { Knex } from "../lib/db.js";

/** Instances and resource readings as the operator API reads them (InstanceService). */

export interface InstanceRow {
  id: string;
  server_id: string;
  name: string;
  config_dir: string;
  version: string;
  running: boolean;
  pid: number | null;
  uptime_seconds: string | null;
  reader_count: number;
  readers_loaded: number | null;
  readers_enabled: number | null;
  ports: Array<{ protocol: string; port: number; ssl: boolean; caid: string; active: boolean }>;
  webif: { host?: string; port?: number; ssl?: boolean; reachable?: boolean; username?: string; readOnly?: boolean };
  settings: Array<{ section: string; key: string; value: string }>;
  problems: string[];
  synced_at: Date;
  gone_at: Date | null;
}

export async function selectInstances(db: Knex, serverId: string, includeGone: boolean): Promise<InstanceRow[]> {
  const query = db("instances").where({ server_id: serverId }).orderBy("name");
  if (!includeGone) query.whereNull("gone_at");
  return query.select(
    "id",
    "server_id",
    "name",
    "config_dir",
    "version",
    "running",
    "pid",
    "uptime_seconds",
    "reader_count",
    "readers_loaded",
    "readers_enabled",
    "ports",
    "webif",
    "settings",
    "problems",
    "synced_at",
    "gone_at",
  );
}

export async function instanceBelongsTo(db: Knex, instanceId: string, serverId: string): Promise<boolean> {
  return Boolean(await db("instances").where({ id: instanceId, server_id: serverId }).first("id"));
}

/** One point of a series: a raw reading or a bucket's averages. */
export interface ReadingPoint {
  at: Date;
  cpu_percent: number;
  memory_mb: number;
  memory_total_mb: number;
  disk_mb: number;
  load1: number;
  samples: number;
}

const span = (query: Knex.QueryBuilder, since: Date, until: Date) => query.where("at", ">=", since).where("at", "<", until);

/** Host readings of a server in [since, until): raw when `bucketSeconds` is 0, else averaged per bucket. */
export async function selectHostSeries(db: Knex, serverId: string, since: Date, until: Date, bucketSeconds: number): Promise<ReadingPoint[]> {
  const base = span(db("host_resource_samples").where({ server_id: serverId }), since, until);
  if (bucketSeconds === 0) {
    return base
      .orderBy("at")
      .select(
        "at",
        "cpu_percent",
        { memory_mb: "memory_used_mb" },
        "memory_total_mb",
        { disk_mb: "disk_used_mb" },
        db.raw("coalesce(load_average[1], 0) as load1"),
        db.raw("1 as samples"),
      );
  }
  return base
    .groupByRaw("1")
    .orderByRaw("1")
    .select(
      db.raw("date_bin(make_interval(secs => ?), at, ?::timestamptz) as at", [bucketSeconds, since]),
      db.raw("avg(cpu_percent) as cpu_percent"),
      db.raw("avg(memory_used_mb) as memory_mb"),
      db.raw("avg(memory_total_mb) as memory_total_mb"),
      db.raw("avg(disk_used_mb) as disk_mb"),
      db.raw("avg(coalesce(load_average[1], 0)) as load1"),
      db.raw("count(*)::int as samples"),
    );
}

/** An instance's readings in [since, until), raw or averaged per bucket. */
export async function selectInstanceSeries(db: Knex, instanceId: string, since: Date, until: Date, bucketSeconds: number): Promise<ReadingPoint[]> {
  const base = span(db("resource_samples").where({ instance_id: instanceId }), since, until);
  if (bucketSeconds === 0) {
    return base
      .orderBy("at")
      .select(
        "at",
        "cpu_percent",
        { memory_mb: "rss_mb" },
        db.raw("0 as memory_total_mb"),
        { disk_mb: "disk_mb" },
        db.raw("0 as load1"),
        db.raw("1 as samples"),
      );
  }
  return base
    .groupByRaw("1")
    .orderByRaw("1")
    .select(
      db.raw("date_bin(make_interval(secs => ?), at, ?::timestamptz) as at", [bucketSeconds, since]),
      db.raw("avg(cpu_percent) as cpu_percent"),
      db.raw("avg(rss_mb) as memory_mb"),
      db.raw("0 as memory_total_mb"),
      db.raw("avg(disk_mb) as disk_mb"),
      db.raw("0 as load1"),
      db.raw("count(*)::int as samples"),
    );
}
