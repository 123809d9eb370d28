/**
 * `--pg-statements`: which statements took PostgreSQL's time in a phase of a scale run, from
 * `pg_stat_statements` (loaded into the run's embedded PostgreSQL for the purpose; it adds a
 * little to PostgreSQL's own figures, so runs compared should both have it or both not).
 */
import type { Knex } from "../../services/lib/db.js";

/** The server settings that keep statistics of every statement, planning included. */
export const statementStatisticsSettings: Readonly<Record<string, string>> = {
  shared_preload_libraries: "pg_stat_statements",
  "pg_stat_statements.track": "all",
  "pg_stat_statements.track_planning": "on",
};

/** Starts counting afresh (creating the extension in the panel's database the first time). */
export async function resetStatementStatistics(db: Knex): Promise<void> {
  await db.raw("create extension if not exists pg_stat_statements");
  await db.raw("select pg_stat_statements_reset()");
}

/**
 * The statements that took the most time since the last reset, a line each: time running and
 * planning, in % of one core over `seconds`; calls; rows; the statement's start.
 */
export async function topStatements(db: Knex, seconds: number, limit = 10): Promise<string[]> {
  const { rows } = await db.raw(
    `select calls, rows, total_exec_time as exec_ms, total_plan_time as plan_ms,
            left(regexp_replace(query, '\\s+', ' ', 'g'), 110) as statement
       from pg_stat_statements order by total_exec_time + total_plan_time desc limit ?`,
    [limit],
  );
  const [all] = (
    await db.raw(
      "select coalesce(sum(total_exec_time), 0) as exec_ms, coalesce(sum(total_plan_time), 0) as plan_ms, coalesce(sum(calls), 0) as calls from pg_stat_statements",
    )
  ).rows as Array<{ exec_ms: number; plan_ms: number; calls: string }>;
  const share = (ms: number) => `${((Number(ms) / 1000 / seconds) * 100).toFixed(1)} %`;
  return [
    `every statement: running ${share(all!.exec_ms)}, planning ${share(all!.plan_ms)} of one core, ${Number(all!.calls)} calls`,
    ...(rows as Array<{ calls: string; rows: string; exec_ms: number; plan_ms: number; statement: string }>).map(
      (r) => `running ${share(r.exec_ms)}, planning ${share(r.plan_ms)}, ${Number(r.calls)} calls, ${Number(r.rows)} rows: ${r.statement}`,
    ),
  ];
}
