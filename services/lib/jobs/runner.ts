import { PgBoss } from "pg-boss";
import type { Logger } from "pino";
import type { DatabaseOutage } from "../database-outage.js";
import type { Knex } from "../db.js";
import { appendJobEvent, insertQueuedJob, markJobFinished, markJobRunning } from "./store.js";

/** What a job's code gets: its input, a signal (stop or expiry), and ways to report. */
export interface JobContext {
  id: string;
  data: unknown;
  signal: AbortSignal;
  log: Logger;
  /** Reports the current step; shown by JobService and streamed by Watch. */
  progress(step: string, percent: number): Promise<void>;
  /** Appends a line of output; never pass secrets (it is shown to operators). */
  output(line: string): Promise<void>;
}

/** A kind of background job, declared by the service that owns it. */
export interface JobDefinition {
  /** Queue name, `<service>.<what>`, e.g. "core.nonce-purge". */
  queue: string;
  /** Cron expression (UTC) when it runs on a schedule; once per tick cluster-wide. */
  cron?: string;
  /** Retries after a failed attempt; default 2. */
  retryLimit?: number;
  /** An attempt running longer is failed; default 15 minutes. */
  expireInSeconds?: number;
  run(ctx: JobContext): Promise<void>;
}

/** A queue runner on one database: runs the definitions' jobs, schedules the cron ones. */
export interface JobRunner {
  /** Queues a job; answers its id. */
  enqueue(queue: string, data?: Record<string, unknown>): Promise<string>;
  /** Stops taking jobs and waits (up to `timeoutMs`) for running ones. */
  stop(timeoutMs: number): Promise<void>;
}

export interface JobRunnerOptions {
  /** Connection URL of the database the queue lives in (pg-boss keeps its own small pool). */
  url: string;
  /** The same database through knex, for job_runs/job_events. */
  db: Knex;
  definitions: readonly JobDefinition[];
  log: Logger;
  /** Poll interval of idle workers, the fallback to LISTEN/NOTIFY; default 2 s. */
  pollingIntervalSeconds?: number;
  /** Logs an unreachable database once per outage (pg-boss reports it at every poll). */
  databaseOutage?: Pick<DatabaseOutage, "notice">;
}

/**
 * Starts pg-boss (schema `pgboss`, created on first start) with a worker per definition.
 * Any process on the same database may run any job; pg-boss creates a scheduled job once per
 * cron tick however many processes schedule it.
 */
export async function startJobRunner(options: JobRunnerOptions): Promise<JobRunner> {
  const { db, log } = options;
  const boss = new PgBoss({
    connectionString: options.url,
    schema: "pgboss",
    max: 4,
    application_name: "myosicam-jobs",
    // Workers on every replica wake on NOTIFY when a job is queued, instead of waiting for a poll.
    useListenNotify: true,
  });
  boss.on("error", (err) => {
    if (!options.databaseOutage?.notice(err)) log.error({ err }, "job queue error");
  });
  await boss.start();
  const known = new Map(options.definitions.map((d) => [d.queue, d]));

  for (const definition of options.definitions) {
    const retryLimit = definition.retryLimit ?? 2;
    await boss.createQueue(definition.queue, { retryLimit, retryDelay: 5, retryBackoff: true, expireInSeconds: definition.expireInSeconds ?? 900 });
    await boss.work(definition.queue, { pollingIntervalSeconds: options.pollingIntervalSeconds ?? 2 }, async (jobs) => {
      for (const job of jobs) {
        const jobLog = log.child({ job: job.id, queue: definition.queue });
        await markJobRunning(db, job.id, definition.queue);
        try {
          await definition.run({
            id: job.id,
            data: job.data,
            signal: job.signal,
            log: jobLog,
            progress: (step, percent) => appendJobEvent(db, job.id, { step, percent: Math.max(0, Math.min(100, Math.round(percent))) }),
            output: (line) => appendJobEvent(db, job.id, { line }),
          });
          await markJobFinished(db, job.id, "succeeded");
        } catch (err) {
          const final = job.retryCount >= retryLimit;
          const message = err instanceof Error ? err.message : String(err);
          jobLog.warn({ err, final }, final ? "job failed" : "job attempt failed; it will be retried");
          await markJobFinished(db, job.id, final ? "failed" : "queued", message);
          throw err;
        }
      }
    });
    if (definition.cron) await boss.schedule(definition.queue, definition.cron, null, { tz: "UTC" });
  }

  return {
    async enqueue(queue, data = {}) {
      if (!known.has(queue)) throw new Error(`no job is defined for queue ${queue}`);
      const id = await boss.send(queue, data);
      if (!id) throw new Error(`the job queue refused a job for ${queue}`);
      await insertQueuedJob(db, id, queue);
      return id;
    },
    stop: (timeoutMs) => boss.stop({ graceful: true, timeout: timeoutMs }),
  };
}

/**
 * Queues one job from a process that runs no workers (the CLI): a panel process with the queue's
 * definition runs it. The queue exists once a panel has started; before that this says so.
 */
export async function enqueueJobOnce(options: { url: string; db: Knex; queue: string; data: Record<string, unknown> }): Promise<string> {
  const boss = new PgBoss({ connectionString: options.url, schema: "pgboss", max: 1, application_name: "myosicam-cli", schedule: false, supervise: false });
  await boss.start();
  try {
    if (!(await boss.getQueue(options.queue))) {
      throw new Error(`the ${options.queue} queue does not exist yet: start the panel once (npm start); it creates its queues`);
    }
    const id = await boss.send(options.queue, options.data);
    if (!id) throw new Error(`the job queue refused a job for ${options.queue}`);
    await insertQueuedJob(options.db, id, options.queue);
    return id;
  } finally {
    await boss.stop({ graceful: false });
  }
}
