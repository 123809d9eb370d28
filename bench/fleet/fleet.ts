/**
 * The fleet emulator: N simulated agents spread over worker processes of their own (worker.ts),
 * never in the panel's process. The emulator keeps the fleet's totals from the workers' reports:
 * registrations, heartbeat latencies, open streams, commands run and delivered again, failures.
 * Everything it waits for has a deadline and fails with what it saw; `stop` always ends the workers.
 */
import { type ChildProcess, fork } from "node:child_process";
import { setPriority } from "node:os";
import type { AgentBehaviour, AgentSeed, FromWorker, WorkerReport } from "./protocol.js";
import { owned } from "../lib/owned-children.js";

export interface FleetOptions {
  url: string;
  ca: string;
  agents: AgentSeed[];
  /** Worker processes; default one per 2,500 agents, at least 2. */
  workers?: number;
  /** Registrations started per second over the whole fleet. */
  rampPerSecond: number;
  behaviour: Omit<AgentBehaviour, "rampPerSecond">;
  /** The workers stop themselves after this long whatever happens (a hung run ends). */
  deadlineMs: number;
  /** The workers' scheduling priority (nice); default `workerNice`. */
  nice?: number;
}

/**
 * The workers stand for agents on other hosts, so the panel and PostgreSQL get the CPU first:
 * sharing two cores as equals, four workers at 10,000 agents took as much as the panel and
 * PostgreSQL together and the panel's calls waited on a starved database. Their own latencies
 * (part of what they measure) grow when they wait; the panel's view is printed beside them.
 */
export const workerNice = 10;

export interface FleetTotals {
  registered: number;
  synced: number;
  reported: number;
  /** Results after which the agent owed a resync (the panel did not take the instance's new hash). */
  resyncsOwed: number;
  refusedWithHint: number;
  streamsOpen: number;
  failures: Record<string, number>;
  lastErrors: string[];
}

export interface Fleet {
  readonly size: number;
  readonly workers: number;
  /** The workers' nice value (undefined if the system did not allow it to be set). */
  readonly nice: number | undefined;
  /** The workers' process ids (for their CPU time). */
  readonly pids: readonly number[];
  totals(): FleetTotals;
  /**
   * Heartbeat and registration latencies gathered since the last call (ms), then forgotten, with
   * the longest any worker's own event loop was held up meanwhile (part of any latency it measured).
   */
  takeLatencies(): { heartbeatMs: number[]; registerMs: number[]; workerLoopDelayMaxMs: number };
  /** How often each command id was run (a second run would be a duplicate) and delivered again. */
  commandRuns(): ReadonlyMap<string, { ran: number; redelivered: number }>;
  /** Resolves when `done(totals)` holds; rejects after `timeoutMs` saying what it waited for and what it saw. */
  until(what: string, done: (t: FleetTotals) => boolean, timeoutMs: number): Promise<number>;
  stop(): Promise<void>;
}

export function defaultWorkers(agents: number): number {
  return Math.max(2, Math.ceil(agents / 2500));
}

export async function startFleet(options: FleetOptions): Promise<Fleet> {
  const workerCount = Math.max(1, Math.min(options.workers ?? defaultWorkers(options.agents.length), options.agents.length));
  const totals: FleetTotals = { registered: 0, synced: 0, reported: 0, resyncsOwed: 0, refusedWithHint: 0, streamsOpen: 0, failures: {}, lastErrors: [] };
  const streamsByWorker = new Array<number>(workerCount).fill(0);
  let heartbeatMs: number[] = [];
  let registerMs: number[] = [];
  let workerLoopDelayMaxMs = 0;
  const runs = new Map<string, { ran: number; redelivered: number }>();
  const watchers = new Set<() => void>();
  let fatal: string | undefined;
  let stopped = false;

  const onReport = (worker: number, r: WorkerReport) => {
    totals.registered += r.registered;
    totals.synced += r.synced;
    totals.reported += r.reported;
    totals.resyncsOwed += r.resyncsOwed;
    totals.refusedWithHint += r.refusedWithHint;
    streamsByWorker[worker] = r.streamsOpen;
    totals.streamsOpen = streamsByWorker.reduce((a, b) => a + b, 0);
    for (const [key, n] of Object.entries(r.failures)) totals.failures[key] = (totals.failures[key] ?? 0) + n;
    for (const line of r.lastErrors) {
      if (!totals.lastErrors.includes(line)) totals.lastErrors = [...totals.lastErrors, line].slice(-8);
    }
    for (const x of r.heartbeatMs) heartbeatMs.push(x);
    for (const x of r.registerMs) registerMs.push(x);
    workerLoopDelayMaxMs = Math.max(workerLoopDelayMaxMs, r.loopDelayMaxMs);
    for (const id of r.ran) runs.set(id, { ran: (runs.get(id)?.ran ?? 0) + 1, redelivered: runs.get(id)?.redelivered ?? 0 });
    for (const id of r.redelivered) runs.set(id, { ran: runs.get(id)?.ran ?? 0, redelivered: (runs.get(id)?.redelivered ?? 0) + 1 });
    for (const watcher of watchers) watcher();
  };

  const children: ChildProcess[] = [];
  const nice = options.nice ?? workerNice;
  let niceSet = true;
  const exited: Array<Promise<void>> = [];
  for (let w = 0; w < workerCount; w++) {
    const share = options.agents.filter((_, i) => i % workerCount === w);
    const child = owned(
      fork(new URL("./worker.ts", import.meta.url), [], {
        execArgv: ["--import", "tsx"],
        stdio: ["ignore", "inherit", "inherit", "ipc"],
        // Each worker holds thousands of connections; it needs no more heap than that.
        // FLEET_WORKER_NODE_OPTIONS: e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the workers.
        env: { ...process.env, NODE_OPTIONS: process.env.FLEET_WORKER_NODE_OPTIONS ?? "" },
      }),
    );
    children.push(child);
    if (child.pid !== undefined) {
      try {
        setPriority(child.pid, nice);
      } catch {
        niceSet = false;
      }
    }
    exited.push(new Promise((resolve) => child.once("exit", () => resolve())));
    child.on("message", (m: FromWorker) => {
      if (m.type === "report") onReport(w, m);
      else {
        fatal = m.message;
        for (const watcher of watchers) watcher();
      }
    });
    child.once("exit", (code, signal) => {
      if (code !== 0 && !stopped) {
        fatal ??= `fleet worker ${w} exited (${signal ?? `code ${code}`})`;
        for (const watcher of watchers) watcher();
      }
    });
    child.send({
      type: "start",
      url: options.url,
      ca: options.ca,
      agents: share,
      behaviour: { ...options.behaviour, rampPerSecond: options.rampPerSecond / workerCount },
      deadlineMs: options.deadlineMs,
    });
  }

  return {
    size: options.agents.length,
    workers: workerCount,
    nice: niceSet ? nice : undefined,
    pids: children.flatMap((c) => (c.pid === undefined ? [] : [c.pid])),
    totals: () => ({ ...totals, failures: { ...totals.failures } }),
    takeLatencies() {
      const taken = { heartbeatMs, registerMs, workerLoopDelayMaxMs };
      heartbeatMs = [];
      registerMs = [];
      workerLoopDelayMaxMs = 0;
      return taken;
    },
    commandRuns: () => runs,
    until(what, done, timeoutMs) {
      const start = performance.now();
      return new Promise<number>((resolve, reject) => {
        const check = () => {
          if (fatal) finish(new Error(`${what}: ${fatal}`));
          else if (done(totals)) finish();
        };
        const timer = setTimeout(() => finish(new Error(`${what}: not within ${Math.round(timeoutMs / 1000)} s; ${describe(totals)}`)), timeoutMs);
        const finish = (err?: Error) => {
          clearTimeout(timer);
          watchers.delete(check);
          if (err) reject(err);
          else resolve(performance.now() - start);
        };
        watchers.add(check);
        check();
      });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const child of children) if (child.connected) child.send({ type: "stop" });
      // A worker that does not end by itself within 15 s is killed.
      const killer = setTimeout(() => {
        for (const child of children) child.kill("SIGKILL");
      }, 15_000);
      await Promise.all(exited);
      clearTimeout(killer);
    },
  };
}

/** The totals in words, for a report or a failure. */
export function describe(t: FleetTotals): string {
  const failures = Object.entries(t.failures)
    .map(([k, n]) => `${k} ×${n}`)
    .join(", ");
  return `registered ${t.registered}, synced ${t.synced}, streams open ${t.streamsOpen}, results ${t.reported}, refused with a retry hint ${t.refusedWithHint}${failures ? `; failures: ${failures}` : ""}${t.lastErrors.length ? `; last errors: ${t.lastErrors.join(" | ")}` : ""}`;
}

/** The q-quantile of `values` (sorted in place). */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  values.sort((a, b) => a - b);
  return values[Math.min(values.length - 1, Math.floor(q * values.length))]!;
}
