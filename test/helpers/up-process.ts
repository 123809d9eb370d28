import { randomUUID } from "node:crypto";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AgentService } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { RegistrationService } from "../../gen/myosicam/agent/v1/registration_pb.js";
import { ServerService } from "../../gen/myosicam/panel/v1/server_pb.js";
import { localCredentialFile, readCliCredential } from "../../services/lib/cli-credential.js";
import { createSignedTransport } from "../../services/lib/hmac/signing-client.js";
import { eventually } from "./eventually.js";
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

/**
 * The settings a test's `up` runs with: its own configuration file and data directory, ports the
 * system chooses, a short shutdown.
 */
export function upTestSettings(dir: string, configFile: string): Record<string, string> {
  return {
    MYOSICAM_CONFIG_FILE: configFile,
    MYOSICAM_DATA_DIR: join(dir, "data"),
    PANEL_PORT: "0",
    ADMIN_PORT: "0",
    EMBEDDED_POSTGRES_PORT: "0",
    SHUTDOWN_TIMEOUT_SECONDS: "5",
  };
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
  const env = () => ({ ...upTestSettings(dir.path, configFile), ...settings });
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

/** Room for a test's fleet, before `up` starts: the development plan it licenses the panel with, made larger (100 servers, 500 instances). */
export async function roomForFleet(cli: ReturnType<typeof cliWith>): Promise<void> {
  const plan = await cli(["admin", "plan", "set", "development", "--name", "Development", "--max-servers", "100", "--max-instances", "500", "--price", "0"]);
  if (plan.code !== 0) throw new Error(`admin plan set failed: ${plan.stderr}`);
}

/** A signed operator-API transport as the panel host's own CLI (the credential `up` wrote into its data directory). */
export async function operatorTransport(stack: UpProcess) {
  const credential = (await readCliCredential(localCredentialFile(stack.report.dataDir)))!;
  return createSignedTransport({
    baseUrl: stack.report.listeners.panel.url,
    ca: stack.ca,
    credentials: { callerId: credential.clientId, secret: credential.secret },
    defaultTimeoutMs: 15_000,
  });
}

/**
 * Adds server `name` through the operator API and registers an agent for it (waiting, after a
 * start, for the panel's license to be validated: those attempts count against
 * REGISTRATION_FAILURES_PER_MINUTE, so raise it); answers its id, token and a signed client.
 */
export async function enrollOnUp(stack: UpProcess, name: string): Promise<{ id: string; token: string; client: Client<typeof AgentService> }> {
  const url = stack.report.listeners.panel.url;
  const servers = createClient(ServerService, await operatorTransport(stack));
  const added = await servers.addServer({ name });
  const registration = createClient(RegistrationService, createConnectTransport({ baseUrl: url, httpVersion: "2", nodeOptions: { ca: stack.ca } }));
  const registered = await eventually(
    () =>
      registration
        .register({
          installToken: added.bootstrap!.installToken,
          agentId: randomUUID(),
          hostname: name,
          ip: "192.0.2.10",
          os: "linux",
          osVersion: "Debian 12",
          arch: "x64",
          agentVersion: "0.1.0",
        })
        .catch((err: unknown) => {
          if (ConnectError.from(err).code === Code.FailedPrecondition) return undefined;
          throw err;
        }),
    (r) => r !== undefined,
    "the panel's license to be validated so an agent can register",
  ).then((r) => r!);
  if (registered.pendingApproval) await servers.approveServers({ serverIds: [registered.serverId] });
  const client = createClient(
    AgentService,
    createSignedTransport({
      baseUrl: url,
      ca: stack.ca,
      credentials: { callerId: registered.serverId, secret: registered.agentToken },
      defaultTimeoutMs: 15_000,
    }),
  );
  return { id: registered.serverId, token: registered.agentToken, client };
}
