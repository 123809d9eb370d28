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

/** Where a series comes from: its table, whose rows, and the expression of each figure. */
interface SeriesSource {
  table: string;
  where: Record<string, string>;
  figures: Record<"cpu_percent" | "memory_mb" | "memory_total_mb" | "disk_mb" | "load1", string>;
}

/** Readings in [since, until): raw when `bucketSeconds` is 0, else averaged per bucket from `since`. */
async function selectSeries(db: Knex, source: SeriesSource, since: Date, until: Date, bucketSeconds: number): Promise<ReadingPoint[]> {
  const query = db(source.table).where(source.where).where("at", ">=", since).where("at", "<", until);
  const figures = Object.entries(source.figures);
  if (bucketSeconds === 0) {
    return query.orderBy("at").select("at", ...figures.map(([name, expr]) => db.raw(`${expr} as ${name}`)), db.raw("1 as samples"));
  }
  return query
    .groupByRaw("1")
    .orderByRaw("1")
    .select(
      db.raw("date_bin(make_interval(secs => ?), at, ?::timestamptz) as at", [bucketSeconds, since]),
      ...figures.map(([name, expr]) => db.raw(`avg(${expr}) as ${name}`)),
      db.raw("count(*)::int as samples"),
    );
}

/** Host readings of a server. */
export function selectHostSeries(db: Knex, serverId: string, since: Date, until: Date, bucketSeconds: number): Promise<ReadingPoint[]> {
  const figures = {
    cpu_percent: "cpu_percent",
    memory_mb: "memory_used_mb",
    memory_total_mb: "memory_total_mb",
    disk_mb: "disk_used_mb",
    load1: "coalesce(load_average[1], 0)",
  };
  return selectSeries(db, { table: "host_resource_samples", where: { server_id: serverId }, figures }, since, until, bucketSeconds);
}

/** An instance's readings (no total memory or load: those are the host's). */
export function selectInstanceSeries(db: Knex, instanceId: string, since: Date, until: Date, bucketSeconds: number): Promise<ReadingPoint[]> {
  const figures = { cpu_percent: "cpu_percent", memory_mb: "rss_mb", memory_total_mb: "0", disk_mb: "disk_mb", load1: "0" };
  return selectSeries(db, { table: "resource_samples", where: { instance_id: instanceId }, figures }, since, until, bucketSeconds);
}
