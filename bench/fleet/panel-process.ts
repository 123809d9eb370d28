/**
 * A panel in a process of its own, started the way an operator starts one (`myosicam serve
 * --services crypto,jobs,agents,panel`), so that its RSS and CPU are the panel's alone and a
 * restart is a real one. Its log goes to `<dataDir>/panel.log`.
 */
import { clockTicks, processStatFields } from "../../agent/discovery/processes.js";
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { owned } from "../lib/owned-children.js";

export interface PanelProcess {
  readonly pid: number;
  readonly url: string;
  readonly ca: string;
  readonly dataDir: string;
  /** Stops it as an operator would (SIGTERM: drain, then exit) or kills it (SIGKILL); resolves on exit. */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
}

const repository = join(import.meta.dirname, "..", "..");

/** Starts the panel and resolves once it listens; rejects with its log's end when it does not within `timeoutMs`. */
export async function startPanelProcess(options: { dataDir: string; env: Record<string, string>; timeoutMs?: number }): Promise<PanelProcess> {
  const logFile = join(options.dataDir, "panel.log");
  const log = createWriteStream(logFile, { flags: "a" });
  const child: ChildProcess = owned(
    spawn(process.execPath, ["--import", "tsx", join(repository, "cli", "main.ts"), "serve", "--services", "crypto,jobs,agents,panel", "--json"], {
      cwd: repository,
      // FLEET_PANEL_NODE_OPTIONS: e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the panel.
      env: { ...process.env, NODE_OPTIONS: process.env.FLEET_PANEL_NODE_OPTIONS ?? "", MYOSICAM_DATA_DIR: options.dataDir, LOG_LEVEL: "info", ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  child.stderr!.pipe(log);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let stdout = "";
  const started = new Promise<{ url: string; certFile: string }>((resolve, reject) => {
    child.stdout!.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8");
      try {
        const described = JSON.parse(stdout) as { listeners: { panel: { url: string } }; tls: { certFile: string } };
        resolve({ url: described.listeners.panel.url, certFile: described.tls.certFile });
      } catch {
        // Not complete yet.
      }
    });
    child.once("exit", async (code, signal) => {
      const tail = (await readFile(logFile, "utf8").catch(() => "")).split("\n").slice(-15).join("\n");
      reject(new Error(`the panel exited while starting (${signal ?? `code ${code}`}); the end of ${logFile}:\n${tail}`));
    });
  });
  const timeoutMs = options.timeoutMs ?? 120_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    const { url, certFile } = await Promise.race([
      started,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the panel did not start within ${timeoutMs / 1000} s; its log: ${logFile}`)), timeoutMs);
      }),
    ]);
    const ca = await readFile(certFile, "utf8");
    return {
      pid: child.pid!,
      url,
      ca,
      dataDir: options.dataDir,
      async stop(signal = "SIGTERM") {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
        await exited;
        clearTimeout(killer);
        log.end();
      },
    };
  } catch (err) {
    child.kill("SIGKILL");
    await exited;
    log.end();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Resident memory (bytes) and CPU time used so far (seconds) of a process, from /proc. */
export async function processUsage(pid: number): Promise<{ rssBytes: number; cpuSeconds: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const fields = await processStatFields("/proc", pid);
  if (!fields) throw new Error(`process ${pid} is gone`);
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { rssBytes: rssKb * 1024, cpuSeconds: ticks / clockTicks };
}

/** The metrics token every fleet panel is started with (stack.ts). */
export const fleetMetricsToken = "fleet-metrics-token-0000000000000000";

/** Reads numeric samples (without labels) off a panel's `GET /metrics`. */
export async function scrapeMetrics(url: string, ca: string, names: readonly string[]): Promise<Record<string, number>> {
  const text = await metricsText(url, ca);
  return Object.fromEntries(names.map((name) => [name, Number(new RegExp(`^${name} ([0-9.e+]+)$`, "m").exec(text)?.[1] ?? Number.NaN)]));
}

async function metricsText(url: string, ca: string): Promise<string> {
  const { connect } = await import("node:http2");
  return new Promise<string>((resolve, reject) => {
    const session = connect(url, { ca });
    session.on("error", reject);
    const req = session.request({ ":path": "/metrics", authorization: `Bearer ${fleetMetricsToken}` });
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (body += c));
    req.on("end", () => {
      session.close();
      resolve(body);
    });
    req.on("error", reject);
    req.end();
  });
}

/** Mean server-side duration and count of each method's successful calls so far, from `/metrics`. */
export async function callDurations(url: string, ca: string): Promise<Array<{ method: string; calls: number; meanMs: number }>> {
  return durationsSince(new Map(), await callTotals(url, ca));
}

/** Successful calls by method so far, and the seconds they took inside the panel together. */
export async function callTotals(url: string, ca: string): Promise<Map<string, { calls: number; seconds: number }>> {
  const text = await metricsText(url, ca);
  const totals = new Map<string, { calls: number; seconds: number }>();
  for (const m of text.matchAll(/^myosicam_rpc_duration_seconds_(sum|count)\{[^}]*method="([^"]+)",code="ok"\} ([0-9.e+-]+)$/gm)) {
    const t = totals.get(m[2]!) ?? { calls: 0, seconds: 0 };
    if (m[1] === "sum") t.seconds = Number(m[3]);
    else t.calls = Number(m[3]);
    totals.set(m[2]!, t);
  }
  return totals;
}

/** The mean time per successful call of each method between two `callTotals`, most called first. */
export function durationsSince(
  before: ReadonlyMap<string, { calls: number; seconds: number }>,
  after: ReadonlyMap<string, { calls: number; seconds: number }>,
): Array<{ method: string; calls: number; meanMs: number }> {
  return [...after]
    .map(([method, a]) => {
      const b = before.get(method) ?? { calls: 0, seconds: 0 };
      const calls = a.calls - b.calls;
      return { method, calls, meanMs: calls > 0 ? ((a.seconds - b.seconds) / calls) * 1000 : 0 };
    })
    .filter((d) => d.calls > 0)
    .sort((a, b) => b.calls - a.calls);
}

/** Callers waiting for a connection of the panel database's pool, as `/metrics` shows it. */
export async function poolWaiting(url: string, ca: string): Promise<number> {
  const text = await metricsText(url, ca);
  return Number(/^myosicam_db_pool_connections\{database="panel",state="waiting"\} ([0-9.e+]+)$/m.exec(text)?.[1] ?? Number.NaN);
}

/** Labels of one Prometheus sample line, e.g. `{le="0.1",method="Heartbeat"}`. */
function labelsOf(text: string): Record<string, string> {
  return Object.fromEntries([...text.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
}

export interface PanelTimings {
  /** Successful calls of `method` so far, and of those how many took longer than `slowSeconds` inside the panel. */
  calls: number;
  slow: number;
  /** The longest the panel's event loop was held up since the previous scrape (prom-client starts over at each), ms. */
  loopLagMaxMs: number;
  /** Batched heartbeat writes so far, and of those how many took longer than `slowSeconds` in PostgreSQL. */
  heartbeatWrites: number;
  slowHeartbeatWrites: number;
}

/**
 * The panel's own view of one method's latency (from the histogram of `/metrics`; `slowSeconds`
 * must be one of its bucket bounds) and of its event loop: with the agents' view beside it, this
 * tells a slow panel from a slow emulator.
 */
export async function panelTimings(url: string, ca: string, method: string, slowSeconds: number): Promise<PanelTimings> {
  const text = await metricsText(url, ca);
  let calls = 0;
  let fast = 0;
  for (const m of text.matchAll(/^myosicam_rpc_duration_seconds_(bucket|count)(\{[^}]*\}) ([0-9.e+-]+)$/gm)) {
    const labels = labelsOf(m[2]!);
    if (labels.method !== method || labels.code !== "ok") continue;
    if (m[1] === "count") calls += Number(m[3]);
    else if (Number(labels.le) === slowSeconds) fast += Number(m[3]);
  }
  const lag = Number(/^myosicam_nodejs_eventloop_lag_max_seconds ([0-9.e+-]+)$/m.exec(text)?.[1] ?? Number.NaN);
  const writes = Number(/^myosicam_heartbeat_write_seconds_count ([0-9.e+-]+)$/m.exec(text)?.[1] ?? 0);
  let fastWrites = 0;
  for (const m of text.matchAll(/^myosicam_heartbeat_write_seconds_bucket(\{[^}]*\}) ([0-9.e+-]+)$/gm)) {
    if (Number(labelsOf(m[1]!).le) === slowSeconds) fastWrites = Number(m[2]);
  }
  return { calls, slow: calls - fast, loopLagMaxMs: lag * 1000, heartbeatWrites: writes, slowHeartbeatWrites: writes - fastWrites };
}
