/**
 * Heartbeat load generator: N simulated agents, each enrolled with its own install token and
 * speaking over its own HTTP/2 TLS connection with real signing, send heartbeats back to back for
 * a while against a running panel (crypto, jobs and agents in this process, embedded PostgreSQL).
 * Prints heartbeats/s, p50/p99 latency and the process RSS; then, on the same server and the
 * same N connections, the rate of an unauthenticated no-op RPC as the baseline, and the ratio.
 *
 *   npm run bench -- heartbeats      (BENCH_AGENTS=1000 BENCH_SECONDS=10 to change sizes)
 *
 * Target for later tuning: 10,000 agents on a 2-core machine with p99 < 100 ms (at the real
 * interval of 60 s each, that is ~170 heartbeats/s; this runs them back to back, so it measures
 * capacity, not the steady state).
 */
import { randomUUID } from "node:crypto";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client } from "@connectrpc/connect";
import { Http2SessionManager, createConnectTransport } from "@connectrpc/connect-node";
import { AgentHealth, AgentService } from "../gen/myosicam/agent/v1/agent_pb.js";
import { RegistrationService } from "../gen/myosicam/agent/v1/registration_pb.js";
import { LicenseService } from "../gen/myosicam/license/v1/license_pb.js";
import { createInstallToken } from "../services/agents/install-tokens.js";
import { selectServices } from "../services/index.js";
import { startHost } from "../services/host.js";
import { loadConfig } from "../services/lib/config.js";
import { createDatabase } from "../services/lib/db.js";
import { startEmbeddedPostgres } from "../services/lib/embedded-postgres.js";
import { createSignedTransport } from "../services/lib/hmac/signing-client.js";
import { licenseKeyHash, writeLicenseAnswer } from "../services/lib/licensing/store.js";
import { createLogger } from "../services/lib/log.js";
import type { ServiceModule } from "../services/lib/service-module.js";
import { generateKeyHex } from "../services/lib/config-file.js";

const agents = Number(process.env.BENCH_AGENTS ?? 1000);
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const log = createLogger({ level: "silent" });
const licenseKey = "mlk_bench_license_key_00000000";

/** An unauthenticated RPC that does nothing: the baseline on the same listener. */
const noop: ServiceModule = {
  name: "bench-noop",
  listener: "panel",
  database: "panel",
  descriptors: [LicenseService],
  migrations: [],
  routes: () => (router) => router.service(LicenseService, { getPlanCatalog: () => ({}) }),
};

/** Runs `call` in a loop on every client until the deadline; answers calls/s and latencies (ms). */
async function drive<C>(clients: C[], call: (c: C) => Promise<unknown>) {
  const latencies: number[] = [];
  const deadline = Date.now() + seconds * 1000;
  let errors = 0;
  const start = process.hrtime.bigint();
  await Promise.all(
    clients.map(async (c) => {
      while (Date.now() < deadline) {
        const t = process.hrtime.bigint();
        try {
          await call(c);
          latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
        } catch {
          errors += 1;
        }
      }
    }),
  );
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { rate: latencies.length / elapsed, p50: at(0.5), p99: at(0.99), errors };
}

const root = await mkdtemp(join(tmpdir(), "myosicam-bench-"));
await chmod(root, 0o711);
const postgres = await startEmbeddedPostgres({ directory: join(root, "pg"), port: 0, log });
try {
  await postgres.ensureDatabase("panel");
  const config = loadConfig({
    MYOSICAM_DATA_DIR: root,
    DATABASE_URL: postgres.url("panel"),
    PANEL_PORT: "0",
    ADMIN_PORT: "0",
    PANEL_ENCRYPTION_KEY: generateKeyHex(),
    PANEL_LICENSE_KEY: licenseKey,
    REGISTRATION_FAILURES_PER_MINUTE: "100000",
    LOG_LEVEL: "silent",
  });
  const host = await startHost(config, [...selectServices(["crypto", "jobs", "agents"]), noop], log);
  const db = createDatabase(postgres.url("panel"), log);
  await writeLicenseAnswer(db, licenseKeyHash(licenseKey), { valid: true, state: "active", quotas: { maxServers: 0, maxInstances: 0 }, message: "", usage: { servers: 0, instances: 0 } }, new Date());
  const url = host.listeners[0]!.url;
  const ca = host.tls.cert;

  const rssBefore = process.memoryUsage().rss;
  const registration = createClient(RegistrationService, createConnectTransport({ baseUrl: url, httpVersion: "2", nodeOptions: { ca } }));
  const enrolled: Array<{ serverId: string; agentToken: string }> = [];
  const enrollStart = Date.now();
  for (let i = 0; i < agents; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, agents - i) }, async (_, j) => {
        const { token } = await createInstallToken(db, { server: `bench-${i + j}`, createdBy: "bench" });
        return registration.register({ installToken: token, agentId: randomUUID(), hostname: `bench-${i + j}`, ip: "192.0.2.1", os: "linux", osVersion: "bench", arch: "x64", agentVersion: "0.1.0" });
      }),
    );
    enrolled.push(...batch);
  }
  console.log(`enrolled ${agents} agents in ${((Date.now() - enrollStart) / 1000).toFixed(1)} s`);

  // Each agent: its own transport, so its own HTTP/2 TLS connection.
  const clients: Array<Client<typeof AgentService>> = enrolled.map((a) =>
    createClient(AgentService, createSignedTransport({ baseUrl: url, credentials: { callerId: a.serverId, secret: a.agentToken }, ca })),
  );
  const beat = { uptimeSeconds: 1n, health: AgentHealth.OK, agentVersion: "0.1.0", load: { one: 0.1, five: 0.1, fifteen: 0.1 } };
  await Promise.all(clients.map((c) => c.heartbeat(beat))); // connect everyone first
  const signed = await drive(clients, (c) => c.heartbeat(beat));
  const rss = process.memoryUsage().rss;
  console.log(`heartbeats, ${agents} agents on ${agents} connections, ${seconds} s: ${signed.rate.toFixed(0)}/s  p50 ${signed.p50.toFixed(1)} ms  p99 ${signed.p99.toFixed(1)} ms  errors ${signed.errors}`);
  console.log(`process RSS (panel and load generator together) ${(rss / 2 ** 20).toFixed(0)} MiB, +${((rss - rssBefore) / 2 ** 20).toFixed(0)} MiB for the agents' connections`);

  const noopClients = enrolled.map(() => {
    const session = new Http2SessionManager(url, {}, { ca });
    return createClient(LicenseService, createConnectTransport({ baseUrl: url, httpVersion: "2", sessionManager: session }));
  });
  await Promise.all(noopClients.map((c) => c.getPlanCatalog({})));
  const baseline = await drive(noopClients, (c) => c.getPlanCatalog({}));
  console.log(`baseline no-op RPC, unauthenticated, same server: ${baseline.rate.toFixed(0)}/s  p50 ${baseline.p50.toFixed(1)} ms  p99 ${baseline.p99.toFixed(1)} ms`);
  console.log(`ratio heartbeats/no-op  ${(signed.rate / baseline.rate).toFixed(3)}`);

  await db.destroy();
  await host.stop();
} finally {
  await postgres.stop();
  await rm(root, { recursive: true, force: true });
}
