import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import * as assert from "uvu/assert";
import { type CliProcess, cliWith, emptyConfigFile, makeTempDir, runCli } from "./cli.js";
import { getHttp2 } from "./https.js";

/** What `up --json` prints. */
export interface UpReport {
  listeners: Record<"panel" | "admin", { url: string; services: string[] }>;
  tls: { certFile: string };
  dataDir: string;
}

/**
 * `myosicam up` as an operator runs it, in a process of its own on a fresh data directory (so its
 * memory is its own and a crash is seen as an exit): the fault suites' target.
 */
export interface UpProcess {
  up: CliProcess;
  report: UpReport;
  ca: string;
  configFile: string;
  /** Runs a `myosicam` command against the same configuration and data directory. */
  cli: ReturnType<typeof cliWith>;
  /** The process's resident memory now, MiB. */
  rssMiB(): Promise<number>;
  /** The median of 5 `GET /healthz` on the panel listener, ms (each must answer 200). */
  healthMs(): Promise<number>;
  alive(): boolean;
  /**
   * Stops it with `signal` (SIGKILL: a crash) and starts it again on the same data directory and
   * settings; resolves once it prints its report. Fixed ports (PANEL_PORT) keep its URL.
   */
  restart(signal: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Processes whose command line names the data directory (a PostgreSQL left behind would). */
  processesOnDataDir(): Promise<string[]>;
  stop(): Promise<void>;
}

/** The settings file `up` reads and writes (KEY=value lines). */
export async function settingsFile(path: string): Promise<Record<string, string>> {
  const text = await readFile(path, "utf8");
  return Object.fromEntries(
    text
      .split("\n")
      .map((l) => /^([A-Z0-9_]+)=(.*)$/.exec(l.trim()))
      .filter((m) => m !== null)
      .map((m) => [m[1]!, m[2]!.replace(/^"(.*)"$/, "$1")]),
  );
}

/**
 * Starts `up` with `settings` beside the test defaults (ports chosen by the system); `before`
 * runs CLI commands before it starts (e.g. creating an admin operator).
 */
export async function startUpProcess(
  label: string,
  settings: Record<string, string> = {},
  before?: (cli: ReturnType<typeof cliWith>) => Promise<void>,
): Promise<UpProcess> {
  const dir = await makeTempDir(label);
  const configFile = emptyConfigFile();
  const env = () => ({
    MYOSICAM_CONFIG_FILE: configFile,
    MYOSICAM_DATA_DIR: join(dir.path, "data"),
    PANEL_PORT: "0",
    ADMIN_PORT: "0",
    EMBEDDED_POSTGRES_PORT: "0",
    SHUTDOWN_TIMEOUT_SECONDS: "5",
    ...settings,
  });
  const cli = cliWith(env);
  let up: CliProcess | undefined;
  try {
    await before?.(cli);
    up = runCli(["up", "--json"], env());
    const report = await up.firstJson<UpReport>();
    const ca = await readFile(report.tls.certFile, "utf8");
    let started = up;
    const handle: UpProcess = {
      up: started,
      report,
      ca,
      configFile,
      cli,
      async rssMiB() {
        return Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${started.child.pid}/status`, "utf8"))![1]) / 1024;
      },
      async healthMs() {
        const times: number[] = [];
        for (let i = 0; i < 5; i++) {
          const start = performance.now();
          const res = await getHttp2(`${handle.report.listeners.panel.url}/healthz`, ca);
          assert.is(res.status, 200, "/healthz answers 200");
          times.push(performance.now() - start);
        }
        return times.sort((a, b) => a - b)[2]!;
      },
      alive: () => started.child.exitCode === null && started.child.signalCode === null,
      async restart(signal) {
        started.child.kill(signal);
        await started.exited;
        started = runCli(["up", "--json"], env());
        handle.up = started;
        handle.report = await started.firstJson<UpReport>();
      },
      async processesOnDataDir() {
        const dataDir = join(dir.path, "data");
        const found: string[] = [];
        for (const pid of await readdir("/proc").catch(() => [] as string[])) {
          if (!/^\d+$/.test(pid)) continue;
          const cmdline = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).replaceAll("\0", " ");
          if (cmdline.includes(dataDir) && !cmdline.includes("MYOSICAM_DATA_DIR")) found.push(`${pid}: ${cmdline.trim().slice(0, 200)}`);
        }
        return found;
      },
      async stop() {
        if (started.child.exitCode === null) {
          started.child.kill("SIGTERM");
          await started.exited;
        }
        await dir.remove();
      },
    };
    return handle;
  } catch (err) {
    if (up && up.child.exitCode === null) {
      up.child.kill("SIGKILL");
      await up.exited;
    }
    await dir.remove();
    throw err;
  }
}
