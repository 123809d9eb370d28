/**
 * What a fleet run stands on: an embedded PostgreSQL of its own, one or more panel processes on it
 * (replicas share the database, the encryption key and the TLS identity, as docs/scaling-out.md
 * describes), optionally HAProxy in front of them in TCP mode, the license written as valid, and
 * install tokens for the simulated agents. `stop` takes it all down and deletes it.
 */
import { spawn } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Transport } from "@connectrpc/connect";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { localCredentialFile, readCliCredential } from "../../services/lib/cli-credential.js";
import { createSignedTransport } from "../../services/lib/hmac/signing-client.js";
import { generateKeyHex } from "../../services/lib/config-file.js";
import { createDatabase, type Knex } from "../../services/lib/db.js";
import { freePort, startEmbeddedPostgres } from "../../services/lib/embedded-postgres.js";
import { licenseKeyHash, writeLicenseAnswer } from "../../services/lib/licensing/store.js";
import { openFileLimit } from "../../services/lib/file-limit.js";
import { createLogger } from "../../services/lib/log.js";
import { selfSignedFiles } from "../../services/lib/tls.js";
import type { AgentSeed } from "./protocol.js";
import { fleetMetricsToken, type PanelProcess, startPanelProcess } from "./panel-process.js";
import { owned, ownedDirectory } from "../lib/owned-children.js";

const quiet = createLogger({ level: "silent" });
const licenseKey = "mlk_fleet_license_key_0000000";

export interface FleetStack {
  root: string;
  db: Knex;
  /** Where agents connect: the only panel, or HAProxy in front of the replicas. */
  url: string;
  ca: string;
  replicas: PanelProcess[];
  /**
   * A signed transport for the operator API through `url`, as the local CLI of the first replica
   * (its data directory's credential): what an operator's command reaches the panel with.
   */
  operatorTransport(): Promise<Transport>;
  /** Restarts replica `i` on its port (SIGTERM, or SIGKILL for a crash); resolves once it listens again. */
  restart(i: number, signal: "SIGTERM" | "SIGKILL"): Promise<{ downMs: number }>;
  /** Stops replica `i` for good (the replica test's "kill one"). */
  kill(i: number): Promise<void>;
  seeds(count: number): Promise<AgentSeed[]>;
  stop(): Promise<void>;
}

export interface StackOptions {
  replicas: number;
  heartbeatSeconds: number;
  /** Extra settings for every replica. */
  env?: Record<string, string>;
  /** The HAProxy binary (required with more than one replica). */
  haproxy?: string;
  /** More PostgreSQL settings (`--pg-statements`: the statistics of every statement). */
  postgresSettings?: Readonly<Record<string, string>>;
}

export async function startFleetStack(options: StackOptions): Promise<FleetStack> {
  const root = ownedDirectory(await mkdtemp(join(tmpdir(), "myosicam-fleet-")));
  await chmod(root, 0o711);
  const stopping: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stopping.reverse()) await stop().catch(() => {});
    await rm(root, { recursive: true, force: true });
  };
  try {
    const postgres = await startEmbeddedPostgres({ directory: join(root, "pg"), port: 0, log: quiet, settings: options.postgresSettings });
    stopping.push(() => postgres.stop());
    await postgres.ensureDatabase("panel");
    const db = createDatabase(postgres.url("panel"), quiet, 4);
    stopping.push(() => db.destroy());

    const shared = {
      DATABASE_URL: postgres.url("panel"),
      PANEL_ENCRYPTION_KEY: generateKeyHex(),
      PANEL_LICENSE_KEY: licenseKey,
      REGISTRATION_FAILURES_PER_MINUTE: "100000",
      AGENT_HEARTBEAT_INTERVAL_SECONDS: String(options.heartbeatSeconds),
      METRICS_TOKEN: fleetMetricsToken,
      ...options.env,
    };
    const ports: number[] = [];
    const envs: Array<Record<string, string>> = [];
    const replicas: PanelProcess[] = [];
    for (let i = 0; i < options.replicas; i++) {
      const dataDir = join(root, `panel-${i + 1}`);
      await mkdir(dataDir, { mode: 0o700 });
      ports.push(await freePort());
      // Replicas present one TLS identity: the first one's (agents pin it, HAProxy passes TLS through).
      const tls: Record<string, string> =
        i === 0 ? {} : { PANEL_TLS_CERT: join(root, "panel-1", selfSignedFiles.cert), PANEL_TLS_KEY: join(root, "panel-1", selfSignedFiles.key) };
      envs.push({ ...shared, ...tls, PANEL_PORT: String(ports[i]) });
      replicas.push(await startPanelProcess({ dataDir, env: envs[i]! }));
      stopping.push(() => replicas[i]!.stop());
    }
    await writeLicenseAnswer(
      db,
      licenseKeyHash(licenseKey),
      { valid: true, state: "active", quotas: { maxServers: 0, maxInstances: 0 }, message: "", usage: { servers: 0, instances: 0 } },
      new Date(),
    );

    let url = replicas[0]!.url;
    if (options.replicas > 1) {
      if (!options.haproxy) throw new Error("more than one replica needs HAProxy in front of them");
      const port = await freePort();
      // Each proxied connection holds two descriptors; HAProxy refuses to start asking for more than it may have.
      const limit = openFileLimit()?.soft ?? 20_000;
      const config = haproxyConfig(port, ports, Math.floor((Math.min(limit, 200_000) - 200) / 2));
      await writeFile(join(root, "haproxy.cfg"), config);
      const proxy = owned(spawn(options.haproxy, ["-db", "-f", join(root, "haproxy.cfg")], { stdio: ["ignore", "ignore", "pipe"] }));
      let proxyErrors = "";
      proxy.stderr!.on("data", (c: Buffer) => (proxyErrors = (proxyErrors + c.toString()).slice(-2000)));
      const proxyExited = new Promise<void>((resolve) => proxy.once("exit", () => resolve()));
      stopping.push(async () => {
        proxy.kill("SIGTERM");
        await proxyExited;
      });
      await Promise.race([
        waitForPort(port, 10_000, () => proxyErrors),
        proxyExited.then(() => {
          throw new Error(`HAProxy exited at start: ${proxyErrors}`);
        }),
      ]);
      url = `https://127.0.0.1:${port}`;
    }

    return {
      root,
      db,
      url,
      ca: replicas[0]!.ca,
      replicas,
      async operatorTransport() {
        const file = localCredentialFile(replicas[0]!.dataDir);
        const credential = await readCliCredential(file);
        if (!credential) throw new Error(`no CLI credential in ${file}`);
        return createSignedTransport({
          baseUrl: url,
          credentials: { callerId: credential.clientId, secret: credential.secret },
          ca: replicas[0]!.ca,
          defaultTimeoutMs: 300_000,
        });
      },
      async restart(i, signal) {
        const start = performance.now();
        await replicas[i]!.stop(signal);
        replicas[i] = await startPanelProcess({ dataDir: replicas[i]!.dataDir, env: envs[i]! });
        return { downMs: performance.now() - start };
      },
      async kill(i) {
        await replicas[i]!.stop("SIGKILL");
      },
      async seeds(count) {
        const seeds: AgentSeed[] = [];
        for (let i = 0; i < count; i += 100) {
          const batch = await Promise.all(
            Array.from({ length: Math.min(100, count - i) }, async (_, j) => {
              const name = `fleet-${String(i + j).padStart(5, "0")}`;
              const { token } = await createInstallToken(db, { server: name, createdBy: "fleet-emulator", ttlSeconds: 86_400 });
              return { name, installToken: token };
            }),
          );
          seeds.push(...batch);
        }
        return seeds;
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/**
 * The spells in which the panel's processes refused calls for load so far, as they wrote them down
 * for the liveness scan: how many, the calls they refused, and the longest (seconds).
 */
export async function refusalSpells(db: Knex): Promise<{ spells: number; refused: number; longestSeconds: number }> {
  const { rows } = await db.raw(
    "select count(*)::int as spells, coalesce(sum(refused), 0)::bigint as refused, coalesce(max(extract(epoch from last_refused_at - started_at)), 0)::float8 as longest from panel_busy_spells",
  );
  return { spells: rows[0].spells, refused: Number(rows[0].refused), longestSeconds: rows[0].longest };
}

/**
 * HAProxy in TCP mode: TLS passes through to the replicas untouched (agents keep pinning the panel's
 * certificate), connections are spread by least connections, a replica that stops answering is
 * taken out within 2 s and a connection that fails to reach one is sent to another.
 */
export function haproxyConfig(port: number, replicaPorts: readonly number[], maxConnections: number): string {
  return [
    "global",
    `  maxconn ${maxConnections}`,
    "defaults",
    "  mode tcp",
    "  timeout connect 5s",
    // Agent streams are long-lived; the panel's keepalive every 25 s keeps them active.
    "  timeout client 1h",
    "  timeout server 1h",
    "  retries 3",
    "  option redispatch",
    "frontend agents",
    `  bind 127.0.0.1:${port}`,
    "  default_backend panels",
    "backend panels",
    "  balance leastconn",
    ...replicaPorts.map((p, i) => `  server panel-${i + 1} 127.0.0.1:${p} check inter 1s fall 2 rise 2`),
    "",
  ].join("\n");
}

async function waitForPort(port: number, timeoutMs: number, why: () => string): Promise<void> {
  const { connect } = await import("node:net");
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`HAProxy did not listen on ${port} within ${timeoutMs / 1000} s: ${why()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
