import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { JobService, JobState, type WatchResponse } from "../../gen/myosicam/jobs/v1/jobs_pb.js";
import { selectServices } from "../../services/index.js";
import { startHost, type Host } from "../../services/host.js";
import { loadConfig } from "../../services/lib/config.js";
import { createDatabase } from "../../services/lib/db.js";
import type { ServiceModule } from "../../services/lib/service-module.js";
import { makeTempDir } from "../helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/database.js";
import { captureLogs } from "../helpers/log-capture.js";

const test = suite("background jobs on the PostgreSQL queue, seen through JobService");

const executions: string[] = [];
/** A service that owns two test queues: one reports progress and output, one always fails. */
const probe: ServiceModule = {
  name: "probe",
  listener: "in-process",
  database: "panel",
  descriptors: [],
  migrations: [],
  routes: () => () => {},
  jobs: () => [
    {
      queue: "probe.steps",
      async run(ctx) {
        executions.push(ctx.id);
        await ctx.progress("connect", 10);
        await ctx.output("connected to 127.0.0.1");
        await ctx.progress("upload", 60);
        await ctx.output(`payload ${JSON.stringify(ctx.data)}`);
      },
    },
    {
      queue: "probe.fails",
      retryLimit: 0,
      async run(ctx) {
        await ctx.progress("download agent", 30);
        throw new Error("download refused: HTTP 401");
      },
    },
  ],
};

let panel: TestDatabase;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
let host: Host;
let replica: Host;
const logs = captureLogs();

test.before(async () => {
  dir = await makeTempDir("jobs");
  panel = await createTestDatabase("jobs");
  const config = loadConfig({ MYOSICAM_DATA_DIR: dir.path, DATABASE_URL: panel.url, JOB_POLL_INTERVAL_SECONDS: "0.5" });
  host = await startHost(config, [...selectServices(["jobs"]), probe], logs.log);
  replica = await startHost(config, [...selectServices(["jobs"]), probe], logs.log);
});
test.after(async () => {
  await host.stop();
  await replica.stop();
  await panel.drop();
  await dir.remove();
});

const client = () => createClient(JobService, host.transportFor(JobService));

async function watchToEnd(id: string): Promise<WatchResponse[]> {
  const updates: WatchResponse[] = [];
  for await (const update of client().watch({ id }, { timeoutMs: 0 })) updates.push(update);
  return updates;
}

test("Watch streams a job's state, progress steps and output lines until it succeeds", async () => {
  const id = await enqueue("probe.steps", { server: "oscam-01" });
  const updates = await watchToEnd(id);
  const events = updates.filter((u) => u.update.case === "event").map((u) => (u.update.value as { event: { case: string; value: unknown } }).event);
  assert.equal(
    events.map((e) => (e.case === "logLine" ? e.value : `${(e.value as { step: string }).step} ${(e.value as { percent: number }).percent}%`)),
    ["connect 10%", "connected to 127.0.0.1", "upload 60%", 'payload {"server":"oscam-01"}'],
  );
  const last = updates.at(-1)!;
  assert.is(last.update.case, "job");
  assert.is((last.update.value as { state: JobState }).state, JobState.SUCCEEDED);
  const { job } = await client().get({ id });
  assert.is(job?.state, JobState.SUCCEEDED);
  assert.is(job?.percent, 100);
  assert.is(job?.attempts, 1);
});

test("a failing job ends failed, with its error, and Watch ends too", async () => {
  const id = await enqueue("probe.fails");
  const updates = await watchToEnd(id);
  const final = updates.at(-1)!.update.value as { state: JobState; error: string; step: string };
  assert.is(final.state, JobState.FAILED);
  assert.is(final.error, "download refused: HTTP 401");
  assert.is(final.step, "download agent", "the step it failed in");
});

test("List filters by queue and state, newest first", async () => {
  const { jobs: failed } = await client().list({ queue: "probe.fails", state: JobState.FAILED });
  assert.ok(failed.length >= 1);
  assert.ok(failed.every((j) => j.queue === "probe.fails" && j.state === JobState.FAILED));
  const { jobs: all } = await client().list({ limit: 1000 });
  const times = all.map((j) => Number(j.createdAt?.seconds ?? 0));
  assert.equal(
    times,
    [...times].sort((a, b) => b - a),
  );
});

test("an unknown job is NotFound; a malformed id is refused by validation", async () => {
  const missing = await client()
    .get({ id: "00000000-0000-4000-8000-000000000000" })
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((missing as ConnectError).code, Code.NotFound);
  const malformed = await client()
    .get({ id: "42" })
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((malformed as ConnectError).code, Code.InvalidArgument);
});

test("with two replicas on one database, each of 20 jobs runs exactly once", async () => {
  executions.length = 0;
  const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => enqueue("probe.steps", { i }, i % 2 ? replica : host)));
  for (const id of ids) await watchToEnd(id);
  assert.equal([...executions].sort(), [...ids].sort());
});

test("the nonce purge is scheduled once, however many replicas start, and runs", async () => {
  const db = createDatabase(panel.url, logs.log);
  try {
    const schedules = await db("pgboss.schedule").where({ name: "core.nonce-purge" }).select("cron");
    assert.equal(schedules, [{ cron: "*/10 * * * *" }]);
  } finally {
    await db.destroy();
  }
  const id = await enqueue("core.nonce-purge");
  const updates = await watchToEnd(id);
  assert.is((updates.at(-1)!.update.value as { state: JobState }).state, JobState.SUCCEEDED);
  const lines = updates.flatMap((u) => (u.update.case === "event" && u.update.value.event.case === "logLine" ? [u.update.value.event.value] : []));
  assert.match(lines.join("\n"), /^purged \d+ nonces older than 600 s$/m);
});

async function enqueue(queue: string, data: Record<string, unknown> = {}, on: Host = host): Promise<string> {
  return on.enqueueJob("panel", queue, data);
}

test.run();
