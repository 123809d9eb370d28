import { setTimeout as sleep } from "node:timers/promises";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { JobSchema, JobState, type Job, type JobService } from "../../gen/myosicam/jobs/v1/jobs_pb.js";
import type { Knex } from "../lib/db.js";
import { findJobRun, listJobEvents, listJobRuns, type JobRun } from "../lib/jobs/store.js";

export interface JobServiceDeps {
  db: Knex;
  /** How often Watch looks for news of a running job; default 250 ms. */
  watchPollMs?: number;
}

const states: Record<JobRun["state"], JobState> = {
  queued: JobState.QUEUED,
  running: JobState.RUNNING,
  succeeded: JobState.SUCCEEDED,
  failed: JobState.FAILED,
  cancelled: JobState.CANCELLED,
};
const stateNames = Object.fromEntries(Object.entries(states).map(([name, value]) => [value, name])) as Record<JobState, JobRun["state"]>;
const finished = new Set<JobRun["state"]>(["succeeded", "failed", "cancelled"]);

function toJob(run: JobRun): Job {
  return create(JobSchema, {
    id: run.id,
    queue: run.queue,
    state: states[run.state],
    createdAt: timestampFromDate(run.createdAt),
    startedAt: run.startedAt ? timestampFromDate(run.startedAt) : undefined,
    finishedAt: run.finishedAt ? timestampFromDate(run.finishedAt) : undefined,
    step: run.step,
    percent: run.percent,
    error: run.error,
    attempts: run.attempts,
  });
}

async function mustFind(db: Knex, id: string): Promise<JobRun> {
  const run = await findJobRun(db, id);
  if (!run) throw new ConnectError(`no job has id ${id}`, Code.NotFound);
  return run;
}

/** Handlers of `myosicam.jobs.v1.JobService`. */
export function createJobService(deps: JobServiceDeps): ServiceImpl<typeof JobService> {
  const { db } = deps;
  const pollMs = deps.watchPollMs ?? 250;
  return {
    async get(req) {
      return { job: toJob(await mustFind(db, req.id)) };
    },
    async list(req) {
      const runs = await listJobRuns(db, {
        queue: req.queue || undefined,
        state: req.state === JobState.UNSPECIFIED ? undefined : stateNames[req.state],
        limit: req.limit || 50,
      });
      return { jobs: runs.map(toJob) };
    },
    async *watch(req, ctx) {
      let run = await mustFind(db, req.id);
      yield { update: { case: "job", value: toJob(run) } };
      let sequence = 0;
      for (;;) {
        // Read the state before the events, so events written before it finished are not missed.
        const current = await mustFind(db, req.id);
        for (const e of await listJobEvents(db, req.id, sequence)) {
          sequence = e.sequence;
          const event =
            e.line !== null
              ? { case: "logLine" as const, value: e.line }
              : { case: "progress" as const, value: { step: e.step ?? "", percent: e.percent ?? 0 } };
          yield { update: { case: "event", value: { sequence: BigInt(e.sequence), at: timestampFromDate(e.at), event } } };
        }
        if (current.state !== run.state) yield { update: { case: "job", value: toJob(current) } };
        run = current;
        if (finished.has(run.state)) return;
        await sleep(pollMs, undefined, { signal: ctx.signal });
      }
    },
  };
}
