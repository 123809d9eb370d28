import type { Knex, Migration } from "../db.js";

/** A job as MyOsicam shows it; pg-boss holds the queue, this table what people look at. */
export interface JobRun {
  id: string;
  queue: string;
  state: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  step: string;
  percent: number;
  error: string;
  attempts: number;
}

/** One progress step or log line of a job. */
export interface JobEventRow {
  sequence: number;
  at: Date;
  step: string | null;
  percent: number | null;
  line: string | null;
}

export const jobMigrations: readonly Migration[] = [
  {
    name: "core/0003_job_runs",
    async up(db) {
      await db.schema.createTable("job_runs", (t) => {
        t.uuid("id").primary();
        t.text("queue").notNullable();
        t.text("state").notNullable();
        t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
        t.timestamp("started_at", { useTz: true });
        t.timestamp("finished_at", { useTz: true });
        t.text("step").notNullable().defaultTo("");
        t.integer("percent").notNullable().defaultTo(0);
        t.text("error").notNullable().defaultTo("");
        t.integer("attempts").notNullable().defaultTo(0);
        t.index(["queue", "created_at"]);
        t.check("state in ('queued', 'running', 'succeeded', 'failed', 'cancelled')", [], "job_runs_state");
      });
      await db.schema.createTable("job_events", (t) => {
        t.uuid("job_id").notNullable().references("job_runs.id").onDelete("CASCADE");
        t.bigIncrements("sequence").primary();
        t.timestamp("at", { useTz: true }).notNullable().defaultTo(db.fn.now());
        t.text("step");
        t.integer("percent");
        t.text("line");
        t.index(["job_id", "sequence"]);
      });
    },
  },
];

const columns = {
  id: "id",
  queue: "queue",
  state: "state",
  createdAt: "created_at",
  startedAt: "started_at",
  finishedAt: "finished_at",
  step: "step",
  percent: "percent",
  error: "error",
  attempts: "attempts",
} as const;

/** Records a job that was just queued. */
export async function insertQueuedJob(db: Knex, id: string, queue: string): Promise<void> {
  await db("job_runs").insert({ id, queue, state: "queued" }).onConflict("id").ignore();
}

/** Marks an attempt as started (creating the row for jobs queued by the scheduler). */
export async function markJobRunning(db: Knex, id: string, queue: string): Promise<void> {
  await db("job_runs")
    .insert({ id, queue, state: "running", started_at: db.fn.now(), attempts: 1 })
    .onConflict("id")
    .merge({ state: "running", started_at: db.fn.now(), attempts: db.raw("job_runs.attempts + 1"), error: "" });
}

/** Ends an attempt: succeeded, failed for good, or queued again for a retry (with its error). */
export async function markJobFinished(db: Knex, id: string, state: JobRun["state"], error = ""): Promise<void> {
  const finished = state === "queued" ? null : db.fn.now();
  await db("job_runs")
    .where({ id })
    .update({ state, error, finished_at: finished, ...(state === "succeeded" && { percent: 100 }) });
}

/** Appends a progress step (and moves the job's current step) or a log line. */
export async function appendJobEvent(db: Knex, id: string, event: { step: string; percent: number } | { line: string }): Promise<void> {
  await db.transaction(async (trx) => {
    await trx("job_events").insert({ job_id: id, ...event });
    if ("step" in event) await trx("job_runs").where({ id }).update({ step: event.step, percent: event.percent });
  });
}

/** One job, or undefined. */
export async function findJobRun(db: Knex, id: string): Promise<JobRun | undefined> {
  return db("job_runs").select(columns).where({ id }).first();
}

/** The newest jobs, optionally of one queue and state. */
export async function listJobRuns(db: Knex, filter: { queue?: string; state?: JobRun["state"]; limit: number }): Promise<JobRun[]> {
  const query = db("job_runs")
    .select(columns)
    .orderBy([{ column: "created_at", order: "desc" }, { column: "id" }])
    .limit(filter.limit);
  if (filter.queue) query.where({ queue: filter.queue });
  if (filter.state) query.where({ state: filter.state });
  return query;
}

/** Events of a job after `afterSequence`, in order. */
export async function listJobEvents(db: Knex, id: string, afterSequence: number): Promise<JobEventRow[]> {
  const rows = await db("job_events")
    .select("sequence", "at", "step", "percent", "line")
    .where({ job_id: id })
    .where("sequence", ">", afterSequence)
    .orderBy("sequence");
  return rows.map((r) => ({ ...r, sequence: Number(r.sequence) }));
}
