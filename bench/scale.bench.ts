/**
 * Scale (`npm run bench -- scale [--agents 1000,5000,10000,20000] [--replicas 2] …`): for each
 * size, a fresh PostgreSQL and panel process (`myosicam serve`), and a fleet emulator of that many
 * agents in worker processes of their own (bench/fleet/). Prints, per size: enrolment rate, panel
 * RSS and CPU at steady state, RSS per connected agent, heartbeat p50/p99, PostgreSQL writes/s,
 * the fan-out of one account change to every agent (a change set through the operator API), and
 * the time for every agent to be back after a panel restart. Appends a row per size to
 * docs/sizing.md (`--no-record` leaves it alone).
 *
 * Targets on a 2-core machine: 20,000 agents with heartbeat p99 < 100 ms and RSS ≤ 2.5 GB;
 * fan-out to 1,000 ≤ 3 s and to 20,000 ≤ 30 s; all back within 5 minutes of a restart.
 * Bounded: every phase has a deadline, and the run stops itself (`--minutes`, default 20 per size).
 */
import { appendFile, copyFile, readFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { AccountService } from "../gen/myosicam/panel/v1/account_pb.js";
import { cpuSample, cpuShares } from "./fleet/cpu-shares.js";
import { describe, quantile, startFleet, type Fleet } from "./fleet/fleet.js";
import { callDurations, callTotals, durationsSince, panelTimings, poolWaiting, processUsage, scrapeMetrics } from "./fleet/panel-process.js";
import { refusalSpells, startFleetStack, type FleetStack } from "./fleet/stack.js";
import { resetStatementStatistics, statementStatisticsSettings, topStatements } from "./fleet/pg-statements.js";
import { connectionCapacity, openFileLimit, reservedDescriptors } from "../services/lib/file-limit.js";

const parseFlags = () =>
  parseArgs({
    args: process.argv.slice(2),
    options: {
      agents: { type: "string", default: "1000" },
      replicas: { type: "string", default: "1" },
      "steady-seconds": { type: "string", default: "120" },
      "heartbeat-seconds": { type: "string", default: "60" },
      "sync-seconds": { type: "string", default: "900" },
      ramp: { type: "string", default: "50" },
      accounts: { type: "string", default: "50-500" },
      instances: { type: "string", default: "1-3" },
      workers: { type: "string" },
      pool: { type: "string" },
      minutes: { type: "string", default: "20" },
      haproxy: { type: "string", default: "/usr/sbin/haproxy" },
      "no-record": { type: "boolean", default: false },
      "pg-statements": { type: "boolean", default: false },
    },
  });
/** The flags, or one line saying which one is unknown or malformed (not a stack trace). */
const { values: flags } = (() => {
  try {
    return parseFlags();
  } catch (err) {
    console.error(`scale: ${(err as Error).message}`);
    process.exit(2);
  }
})();
/** A whole number from a flag, or the run stops here saying which flag is wrong. */
function whole(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < min || n > max) {
    console.error(`scale: --${flag} must be a whole number from ${min} to ${max}, got "${text}"`);
    process.exit(2);
  }
  return n;
}
const range = (flag: string, text: string): [number, number] => {
  const [a, b = a] = text.split("-");
  const low = whole(flag, a ?? "", 1, 100_000);
  const high = whole(flag, b ?? "", low, 100_000);
  return [low, high];
};
const sizes = flags.agents.split(",").map((size) => whole("agents", size, 1, 1_000_000));
const replicas = whole("replicas", flags.replicas, 1, 8);
const steadySeconds = whole("steady-seconds", flags["steady-seconds"], 1, 3600);
const heartbeatSeconds = whole("heartbeat-seconds", flags["heartbeat-seconds"], 1, 3600);
const minutes = whole("minutes", flags.minutes, 1, 600);
const ramp = whole("ramp", flags.ramp, 1, 10_000);
const syncSeconds = whole("sync-seconds", flags["sync-seconds"], 1, 86_400);
const instances = range("instances", flags.instances);
const accountsPerInstance = range("accounts", flags.accounts);
const workers = flags.workers === undefined ? undefined : whole("workers", flags.workers, 1, 64);
/** DATABASE_POOL_SIZE of every panel process (its default when the flag is not given). */
const poolSize = flags.pool === undefined ? undefined : whole("pool", flags.pool, 2, 1000);

interface Figures {
  agents: number;
  replicas: number;
  workers: number;
  enrolPerSecond: number;
  connectSeconds: number;
  rssMb: number;
  rssPerAgentKb: number;
  cpuPercent: number;
  heartbeatsPerSecond: number;
  heartbeatP50: number;
  heartbeatP99: number;
  dbWritesPerSecond: number;
  /** Undefined when not every result was in within 300 s (a note says how many were): the run goes on to the restart. */
  fanOutSeconds: number | undefined;
  restartBackSeconds: number;
  /** The panel's RSS once every agent is back after the restart: held agents without the first syncs' garbage. */
  restartedRssMb: number;
  refusedWithHint: number;
  load: string;
  notes: string[];
}

/** Rows inserted, updated and deleted in the panel's database so far, and transactions committed. */
async function databaseWrites(stack: FleetStack): Promise<{ rows: number; commits: number }> {
  const { rows } = await stack.db.raw(
    "select tup_inserted + tup_updated + tup_deleted as rows, xact_commit as commits from pg_stat_database where datname = current_database()",
  );
  return { rows: Number(rows[0].rows), commits: Number(rows[0].commits) };
}

/**
 * Watches the first panel's database pool once a second until `stop`, which answers the most
 * callers seen waiting for a connection at once (how close the pool came to its acquire timeout).
 */
function watchPool(stack: FleetStack): { stop(): number } {
  let mostWaiting = 0;
  const timer = setInterval(() => {
    poolWaiting(stack.replicas[0]!.url, stack.ca).then(
      (waiting) => (mostWaiting = Math.max(mostWaiting, waiting)),
      () => {},
    );
  }, 1000);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      return mostWaiting;
    },
  };
}

async function panelsUsage(stack: FleetStack) {
  const all = await Promise.all(stack.replicas.map((r) => processUsage(r.pid)));
  return { rssBytes: all.reduce((a, u) => a + u.rssBytes, 0), cpuSeconds: all.reduce((a, u) => a + u.cpuSeconds, 0), each: all };
}

/** Whether this machine lets a panel hold `agents` connections; the reason when it does not. */
function fileLimitProblem(agents: number): string | undefined {
  const fileLimit = openFileLimit();
  const capacity = connectionCapacity(fileLimit);
  const perReplica = Math.ceil(agents / replicas);
  // Behind HAProxy each agent also costs it two descriptors.
  const proxy = replicas > 1 ? agents * 2 : 0;
  const limit = fileLimit?.soft ?? Number.POSITIVE_INFINITY;
  if (capacity !== undefined && perReplica > capacity) {
    return `a panel here may hold ${capacity} connections (open-file limit ${limit} less ${reservedDescriptors} kept back) and would need ${perReplica}: raise the hard limit (LimitNOFILE, ulimit -Hn; root only) or use more replicas`;
  }
  if (proxy > limit - 200) return `HAProxy would need ${proxy} descriptors for ${agents} agents; the open-file limit here is ${limit}`;
  return undefined;
}

async function measure(agents: number): Promise<Figures> {
  const notes: string[] = [];
  const problem = fileLimitProblem(agents);
  if (problem) throw new Error(`not measured: ${problem}`);
  const stack = await startFleetStack({
    replicas,
    heartbeatSeconds,
    haproxy: flags.haproxy,
    env: poolSize === undefined ? {} : { DATABASE_POOL_SIZE: String(poolSize) },
    postgresSettings: flags["pg-statements"] ? statementStatisticsSettings : undefined,
  });
  /** With `--pg-statements`: the statements that took PostgreSQL's time since `reset`, over `seconds`. */
  const statements = {
    reset: () => (flags["pg-statements"] ? resetStatementStatistics(stack.db) : Promise.resolve()),
    print: async (phase: string, seconds: number) => {
      if (!flags["pg-statements"]) return;
      console.log(`  PostgreSQL's statements ${phase}:`);
      for (const line of await topStatements(stack.db, seconds)) console.log(`    ${line}`);
    },
  };
  let fleet: Fleet | undefined;
  const hardStop = setTimeout(() => {
    console.error(`scale: ${agents} agents did not finish within ${minutes} minutes; stopping. ${fleet ? describe(fleet.totals()) : ""}`);
    process.exit(1);
  }, minutes * 60_000);
  hardStop.unref();
  try {
    const seeds = await stack.seeds(agents);
    // The panel before any agent: what each connected agent adds is measured against this.
    const idle = await panelsUsage(stack);
    fleet = await startFleet({
      url: stack.url,
      ca: stack.ca,
      agents: seeds,
      workers,
      rampPerSecond: ramp,
      behaviour: {
        heartbeatSeconds,
        syncSeconds,
        instances,
        accounts: accountsPerInstance,
      },
      deadlineMs: minutes * 60_000,
    });
    const f = fleet;
    /** How long the workers' own loops stalled since the last look (a starved emulator is slow to answer too). */
    const printStalls = (when: string) =>
      console.log(`  the emulator's workers' own loops were held up at most ${f.takeLatencies().workerLoopDelayMaxMs.toFixed(0)} ms ${when}`);
    /** CPU used so far by the panel, PostgreSQL and the emulator: who took the cores in a phase. */
    const cores = cpus().length;
    const cpuNow = () => cpuSample({ panelPids: stack.replicas.map((r) => r.pid), postgresDir: join(stack.root, "pg"), emulatorPids: f.pids });
    console.log(
      `${agents} agents in ${f.workers} worker processes${f.nice === undefined ? "" : ` (nice ${f.nice})`}, ramp ${ramp}/s, ${replicas} panel replica(s)${replicas > 1 ? " behind HAProxy" : ""}`,
    );
    // The ramp alone takes agents/ramp seconds; every phase gets that and generous slack.
    const rampMs = (agents / ramp) * 1000;
    // From the first registration (the workers take a moment to start) to the last.
    await f.until("the first registration", (t) => t.registered > 0, 120_000);
    // Enrolment slows as the enrolled fleet takes the panel's share of the cores (from ≈20/s to ≈3/s at 10,000 here).
    const enrolMs = await f.until("every agent registered", (t) => t.registered === agents, rampMs + 600_000);
    const enrolPerSecond = (agents - 1) / (enrolMs / 1000);
    const connectMs = await f.until("every agent synced with its stream open", (t) => t.synced >= agents && t.streamsOpen === agents, 600_000);
    const durations = await callDurations(stack.replicas[0]!.url, stack.ca);
    console.log(
      `  the first panel's mean time per successful call so far: ${durations.map((d) => `${d.method} ${d.meanMs.toFixed(0)} ms ×${d.calls}`).join(", ")}`,
    );
    console.log(
      `enrolled ${agents} in ${(enrolMs / 1000).toFixed(1)} s (${enrolPerSecond.toFixed(0)}/s, the ramp allows ${ramp}/s); all synced and subscribed ${(connectMs / 1000).toFixed(1)} s later`,
    );

    // Steady state: every agent heartbeating at its interval.
    await new Promise((r) => setTimeout(r, heartbeatSeconds * 1000));
    f.takeLatencies();
    // The panel's own view starts here too (its loop-lag figure starts over at each scrape).
    const timings0 = await panelTimings(stack.replicas[0]!.url, stack.ca, "Heartbeat", 0.1);
    const usage0 = await panelsUsage(stack);
    await statements.reset();
    const cpuSteady0 = await cpuNow();
    const writes0 = await databaseWrites(stack);
    const t0 = performance.now();
    let peakRss = usage0.rssBytes;
    const steadyPool = watchPool(stack);
    const sampler = setInterval(() => {
      panelsUsage(stack).then(
        (u) => (peakRss = Math.max(peakRss, u.rssBytes)),
        () => {},
      );
    }, 5000);
    await new Promise((r) => setTimeout(r, steadySeconds * 1000));
    clearInterval(sampler);
    const steadyPoolWaiting = steadyPool.stop();
    const usage1 = await panelsUsage(stack);
    const cpuSteady1 = await cpuNow();
    const memory = await scrapeMetrics(stack.replicas[0]!.url, stack.ca, ["myosicam_nodejs_heap_size_used_bytes", "myosicam_nodejs_external_memory_bytes"]);
    const writes1 = await databaseWrites(stack);
    const seconds = (performance.now() - t0) / 1000;
    const { heartbeatMs, workerLoopDelayMaxMs } = f.takeLatencies();
    const timings1 = await panelTimings(stack.replicas[0]!.url, stack.ca, "Heartbeat", 0.1);
    const serverCalls = timings1.calls - timings0.calls;
    const serverSlow = timings1.slow - timings0.slow;
    const writes = timings1.heartbeatWrites - timings0.heartbeatWrites;
    const slowWrites = timings1.slowHeartbeatWrites - timings0.slowHeartbeatWrites;
    peakRss = Math.max(peakRss, usage1.rssBytes);
    const steady = {
      rssMb: peakRss / 2 ** 20,
      cpuPercent: ((usage1.cpuSeconds - usage0.cpuSeconds) / seconds) * 100,
      heartbeatsPerSecond: heartbeatMs.length / seconds,
      p50: quantile(heartbeatMs, 0.5),
      p99: quantile(heartbeatMs, 0.99),
      dbWrites: (writes1.rows - writes0.rows) / seconds,
      commits: (writes1.commits - writes0.commits) / seconds,
    };
    console.log(
      `steady ${seconds.toFixed(0)} s: panel RSS ${steady.rssMb.toFixed(0)} MiB, ${(idle.rssBytes / 2 ** 20).toFixed(0)} MiB before the fleet (${((peakRss - idle.rssBytes) / agents / 1024).toFixed(0)} KiB per agent), CPU ${steady.cpuPercent.toFixed(0)} % of one core; ` +
        `${steady.heartbeatsPerSecond.toFixed(0)} heartbeats/s p50 ${steady.p50.toFixed(1)} ms p99 ${steady.p99.toFixed(1)} ms; ` +
        `PostgreSQL ${steady.dbWrites.toFixed(0)} rows written/s in ${steady.commits.toFixed(0)} commits/s`,
    );
    console.log(
      `  where the time went: inside the first panel ${serverSlow} of ${serverCalls} heartbeats took over 100 ms (${((serverSlow / Math.max(1, serverCalls)) * 100).toFixed(2)} %), ` +
        `its event loop was held up at most ${timings1.loopLagMaxMs.toFixed(0)} ms, up to ${steadyPoolWaiting} calls at once waited for a database connection, ${slowWrites} of its ${writes} batched heartbeat writes took over 100 ms in PostgreSQL; the emulator's workers' own loops at most ${workerLoopDelayMaxMs.toFixed(0)} ms (counted in the agents' latencies)`,
    );
    console.log(`  CPU at steady state: ${cpuShares(cpuSteady0, cpuSteady1, cores)}`);
    await statements.print("at steady state", seconds);
    console.log(
      `  of the first panel's memory: JS heap in use ${(memory.myosicam_nodejs_heap_size_used_bytes! / 2 ** 20).toFixed(0)} MiB, external ${(memory.myosicam_nodejs_external_memory_bytes! / 2 ** 20).toFixed(0)} MiB; the rest is native (TLS, HTTP/2 sessions) and heap not yet returned`,
    );

    // Fan-out: one account change on every agent, as an operator makes it.
    const accounts = createClient(AccountService, await stack.operatorTransport());
    const reportedBefore = f.totals().reported;
    const syncedBefore = f.totals().synced;
    const owedBefore = f.totals().resyncsOwed;
    const fanPool = watchPool(stack);
    f.takeLatencies();
    const callsBeforeFanOut = await callTotals(stack.replicas[0]!.url, stack.ca);
    const fanStartDb: Date = (await stack.db.raw("select now() as at")).rows[0].at;
    const cpuFan0 = await cpuNow();
    // Counted by the panel as it stores them (`synced_at` moves for a content hash taken from a result too).
    const snapshotsStored = async () =>
      (await scrapeMetrics(stack.replicas[0]!.url, stack.ca, ["myosicam_instance_snapshots_stored_total"])).myosicam_instance_snapshots_stored_total!;
    const snapshotsBefore = await snapshotsStored();
    await statements.reset();
    const fanStart = performance.now();
    const { changeSet } = await accounts.createChangeSet({
      description: `fan-out to ${agents} agents`,
      selection: { selection: { case: "filter", value: { users: ["main-user0"] } } },
      edits: [{ edit: { case: "setDescription", value: "moved to the kitchen" } }],
    });
    const planMs = performance.now() - fanStart;
    const expected = changeSet!.counts!.pending;
    if (expected !== agents) notes.push(`the fan-out selected ${expected} accounts, not ${agents}`);
    // Progress every 15 s: when the fan-out goes wrong, the report shows how it unfolded.
    const progress = setInterval(() => {
      const t = f.totals();
      console.log(
        `  fan-out after ${((performance.now() - fanStart) / 1000).toFixed(0)} s: ${t.reported - reportedBefore} results, ${t.streamsOpen} streams open, ${t.refusedWithHint} refused with a hint so far`,
      );
    }, 15_000);
    let fanOutSeconds: number | undefined;
    // Results are in once the panel has stored every item as applied: timed by polling its
    // database, not by the emulator's counts (its workers report once a second, later when their
    // loops are busy, which added up to 2 s to a fan-out of a few seconds).
    const polling = new AbortController();
    const stored = countReaching(
      () => rowCount(stack.db("change_set_items").where({ change_set_id: changeSet!.id, status: "applied" }).count({ n: "*" })),
      expected,
      300_000,
      polling.signal,
    ).then((r) => ({ ...r, at: performance.now() }));
    try {
      await f.until(`every agent's result of the fan-out`, (t) => t.reported - reportedBefore >= expected, 300_000);
      setTimeout(() => polling.abort(), 60_000).unref();
      const applied = await stored;
      const cpuFan1 = await cpuNow();
      if (!applied.done) throw new Error(`only ${applied.count} of ${expected} fan-out items stored as applied a minute after the agents reported`);
      fanOutSeconds = (applied.at - fanStart) / 1000;
      console.log(
        `fan-out of one account change to ${expected} agents: every result stored after ${fanOutSeconds.toFixed(2)} s (planning and sending ${(planMs / 1000).toFixed(2)} s; up to ${fanPool.stop()} calls at once waited for a database connection)`,
      );
      clearInterval(progress);
      console.log(`  CPU during the fan-out: ${cpuShares(cpuFan0, cpuFan1, cores)}`);
      await statements.print("during the fan-out", fanOutSeconds);
      console.log(`  ${await fanOutTimeline(stack, changeSet!.id, fanStartDb)}`);
      const during = durationsSince(callsBeforeFanOut, await callTotals(stack.replicas[0]!.url, stack.ca));
      console.log(
        `  the first panel's mean time per successful call meanwhile: ${during.map((d) => `${d.method} ${d.meanMs.toFixed(0)} ms ×${d.calls}`).join(", ")}`,
      );
      // The results updated the account table and, where the panel held the snapshot the change
      // started from, the instance's content hash: no resync follows those. The others are
      // resynced 2–60 s later (the ones the sync queue turned away are sent again after the
      // agent's next heartbeat), with a snapshot where the panel did not take the new hash.
      const owed = f.totals().resyncsOwed - owedBefore;
      const resynced =
        owed === 0 ||
        (await f
          .until(`the resyncs owed after the change`, (t) => t.synced - syncedBefore >= owed, 300_000)
          .then(
            () => true,
            () => false,
          ));
      const snapshots = (await snapshotsStored()) - snapshotsBefore;
      console.log(
        `  the panel took the instance's new content hash from ${expected - owed} of ${expected} results (no resync follows those); ` +
          (owed === 0
            ? "no resync was owed"
            : resynced
              ? `the ${owed} resyncs owed were answered after ${((performance.now() - fanStart) / 1000).toFixed(2)} s`
              : `${f.totals().synced - syncedBefore} of the ${owed} resyncs owed answered within 300 s`) +
          `; ${snapshots} snapshots stored since the change`,
      );
    } catch (err) {
      // A fan-out that does not finish is a figure, not the end of the run: the restart is measured still.
      const note = `fan-out NOT finished: ${(err as Error).message}; ${f.totals().reported - reportedBefore} of ${expected} results in (planning and sending ${(planMs / 1000).toFixed(2)} s); the restart below is measured with the rest still under way`;
      console.log(note);
      notes.push(note);
      fanPool.stop();
    } finally {
      polling.abort();
      clearInterval(progress);
      printStalls("during the fan-out");
    }

    // Restart: every agent's stream breaks at once and they all come back (the thundering herd).
    const refusedBefore = f.totals().refusedWithHint;
    const { downMs } = await stack.restart(0, "SIGTERM");
    const restartedAt = performance.now();
    const cpuBack0 = await cpuNow();
    f.takeLatencies();
    const comingBack = setInterval(() => {
      const t = f.totals();
      console.log(
        `  restart after ${((performance.now() - restartedAt) / 1000).toFixed(0)} s: ${t.streamsOpen} streams open, ${t.refusedWithHint - refusedBefore} refused with a hint so far`,
      );
    }, 30_000);
    try {
      await f.until("the restart noticed", (t) => t.streamsOpen < agents, 60_000).catch(() => {});
      await f.until("every agent back after the restart", (t) => t.streamsOpen === agents, 300_000 + 60_000);
    } finally {
      clearInterval(comingBack);
      printStalls("since the restart");
    }
    const restartBackSeconds = (performance.now() - restartedAt) / 1000;
    console.log(`  CPU while the agents came back: ${cpuShares(cpuBack0, await cpuNow(), cores)}`);
    const refusedWithHint = f.totals().refusedWithHint - refusedBefore;
    const restartedRss = (await panelsUsage(stack)).rssBytes / 2 ** 20;
    // How much of that RSS is the JS heap V8 holds, and how much of it is in use: the rest is native
    // (TLS, HTTP/2 sessions, what malloc keeps).
    const heapAfter = await scrapeMetrics(stack.replicas[0]!.url, stack.ca, ["myosicam_nodejs_heap_size_used_bytes", "myosicam_nodejs_heap_size_total_bytes"]);
    console.log(
      `restart: down ${(downMs / 1000).toFixed(1)} s, then every agent back within ${restartBackSeconds.toFixed(1)} s (target ≤ 300 s); ${refusedWithHint} calls refused early with a retry hint; RSS after ${restartedRss.toFixed(0)} MiB (JS heap ${(heapAfter.myosicam_nodejs_heap_size_total_bytes! / 2 ** 20).toFixed(0)} MiB, ${(heapAfter.myosicam_nodejs_heap_size_used_bytes! / 2 ** 20).toFixed(0)} MiB of it in use)`,
    );
    const spells = await refusalSpells(stack.db);
    const spellWords = `the panel refused calls for load in ${spells.spells} spells over the whole run (${spells.refused} calls, the longest spell ${spells.longestSeconds.toFixed(0)} s), not counted as the agents' silence`;
    console.log(spellWords);
    notes.push(spellWords);
    console.log(`fleet: ${describe(f.totals())}`);
    return {
      agents,
      replicas,
      workers: f.workers,
      enrolPerSecond,
      connectSeconds: connectMs / 1000,
      rssMb: steady.rssMb,
      rssPerAgentKb: (peakRss - idle.rssBytes) / agents / 1024,
      cpuPercent: steady.cpuPercent,
      heartbeatsPerSecond: steady.heartbeatsPerSecond,
      heartbeatP50: steady.p50,
      heartbeatP99: steady.p99,
      dbWritesPerSecond: steady.dbWrites,
      fanOutSeconds,
      restartBackSeconds,
      restartedRssMb: restartedRss,
      refusedWithHint,
      load: loadavg()
        .map((l) => l.toFixed(2))
        .join(" "),
      notes,
    };
  } catch (err) {
    // The panel's own words for what went wrong, before its log goes with the stack.
    for (const [i, replica] of stack.replicas.entries()) {
      const log = join(replica.dataDir, "panel.log");
      const errors = await panelErrors(log);
      if (errors.length > 0) console.error(`  ${replica.url} logged at error level, last first:\n${errors.map((e) => `    ${e}`).join("\n")}`);
      // The whole log outlives the stack (whose directory goes): where to read what happened.
      const kept = join(tmpdir(), `myosicam-scale-${agents}-panel-${i + 1}.log`);
      if (
        await copyFile(log, kept).then(
          () => true,
          () => false,
        )
      )
        console.error(`  its whole log: ${kept}`);
    }
    throw err;
  } finally {
    clearTimeout(hardStop);
    await fleet?.stop();
    await stack.stop();
  }
}

/**
 * Where a fan-out's time went, by PostgreSQL's clock from the moment it was asked for: when its
 * commands were stored, delivered (each claim's transaction) and their results written (each
 * batch's transaction), as first / median / last and how many transactions each took.
 */
async function fanOutTimeline(stack: FleetStack, changeSetId: string, start: Date): Promise<string> {
  const rows: Array<{ created_at: Date; delivered_at: Date | null; finished_at: Date | null }> = await stack
    .db("commands as c")
    .whereIn("c.id", stack.db("change_set_items").where({ change_set_id: changeSetId }).whereNotNull("command_id").select("command_id"))
    .select("c.created_at", "c.delivered_at", "c.finished_at");
  const phase = (name: string, times: Array<Date | null>) => {
    const at = times.filter((t): t is Date => t !== null).map((t) => (t.getTime() - start.getTime()) / 1000);
    const transactions = new Set(at).size;
    if (at.length === 0) return `${name} none`;
    return `${name} ${quantile(at, 0).toFixed(2)} / ${quantile(at, 0.5).toFixed(2)} / ${quantile(at, 1).toFixed(2)} s in ${transactions} transaction${transactions === 1 ? "" : "s"}`;
  };
  const columns = [
    ["stored", "created_at"],
    ["delivered", "delivered_at"],
    ["results written", "finished_at"],
  ] as const;
  const phases = columns.map(([name, column]) =>
    phase(
      name,
      rows.map((r) => r[column]),
    ),
  );
  return `timeline of the fan-out's ${rows.length} commands (PostgreSQL's clock, first / median / last, from the request): ${phases.join("; ")}`;
}

/**
 * Waits (at most `limitMs`, or until `signal` aborts) until `count()` reaches `expected`; answers
 * the last count. It polls every 20 ms at first and then every 1 % of the time waited so far
 * (at most every 500 ms), so the moment it sees is late by at most 20 ms or 1 %, whichever is
 * more: polled every 20 ms throughout, counting a 10,000-item change set took 12 % of a core of
 * the PostgreSQL it measures through a 47 s fan-out.
 */
async function countReaching(count: () => Promise<number>, expected: number, limitMs: number, signal?: AbortSignal): Promise<{ count: number; done: boolean }> {
  const started = Date.now();
  const deadline = started + limitMs;
  let n = 0;
  for (;;) {
    n = await count().catch(() => n);
    if (n >= expected) return { count: n, done: true };
    if (Date.now() > deadline || signal?.aborted) return { count: n, done: false };
    await new Promise((r) => setTimeout(r, Math.min(500, Math.max(20, (Date.now() - started) / 100))));
  }
}

const rowCount = async (query: Promise<Array<Record<string, unknown>>>) => Number((await query)[0]!.n);

/** The last few distinct error-level lines of a panel's log and its database-outage warnings (with their cause), newest first. */
async function panelErrors(file: string): Promise<string[]> {
  const lines = (await readFile(file, "utf8").catch(() => "")).split("\n").slice(-20_000);
  const seen = new Set<string>();
  for (const line of lines.reverse()) {
    try {
      const entry = JSON.parse(line) as { level?: number; msg?: string; rpc?: string; reason?: string; pools?: unknown; err?: { message?: string } };
      // Errors, and the one warning an outage of the database (or of its pool) gets: its reason is the underlying error.
      const outage = entry.msg?.startsWith("the database") || entry.msg?.startsWith("every database connection");
      if ((entry.level ?? 0) < 50 && !outage) continue;
      const pools = entry.pools === undefined ? undefined : `pools ${JSON.stringify(entry.pools)}`;
      seen.add([entry.msg, entry.rpc, entry.reason, pools, entry.err?.message].filter(Boolean).join(" — ").slice(0, 500));
    } catch {
      // Not a JSON line (a stack trace printed by the runtime).
    }
    if (seen.size >= 5) break;
  }
  return [...seen];
}

const sizingFile = join(import.meta.dirname, "..", "docs", "sizing.md");
const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;

async function record(f: Figures) {
  const text = await readFile(sizingFile, "utf8").catch(() => "");
  if (!text.includes("<!-- results -->")) {
    console.error(`${sizingFile} has no results table; not recorded`);
    return;
  }
  const row = [
    new Date().toISOString().slice(0, 10),
    f.agents.toLocaleString("en"),
    f.replicas,
    f.enrolPerSecond.toFixed(0),
    f.rssMb.toFixed(0),
    f.rssPerAgentKb.toFixed(0),
    f.cpuPercent.toFixed(0),
    `${f.heartbeatP50.toFixed(1)} / ${f.heartbeatP99.toFixed(1)}`,
    f.dbWritesPerSecond.toFixed(0),
    f.fanOutSeconds?.toFixed(1) ?? "not finished",
    f.restartBackSeconds.toFixed(0),
    f.refusedWithHint,
    f.restartedRssMb.toFixed(0),
    `${flags.ramp}/s, ${flags.instances} × ${flags.accounts}`,
    f.load,
    machine,
  ];
  await appendFile(sizingFile, `| ${row.join(" | ")} |\n`);
}

let failed = false;
for (const agents of sizes) {
  console.log(
    `== ${agents} agents (load average before: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")})`,
  );
  try {
    const figures = await measure(agents);
    for (const note of figures.notes) console.log(`note: ${note}`);
    if (!flags["no-record"]) await record(figures);
  } catch (err) {
    failed = true;
    console.error(`scale: ${agents} agents: ${(err as Error).message}`);
  }
}
process.exit(failed ? 1 : 0);
