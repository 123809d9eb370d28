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
import { createClient } from "@connectrpc/connect";
import { Http2SessionManager, createConnectTransport } from "@connectrpc/connect-node";
import { AgentHealth } from "../gen/myosicam/agent/v1/agent_pb.js";
import { LicenseService } from "../gen/myosicam/license/v1/license_pb.js";
import type { ServiceModule } from "../services/lib/service-module.js";
import { agentClient, enrollAgents, startBenchPanel } from "./lib/panel.js";

const agents = Number(process.env.BENCH_AGENTS ?? 1000);
const seconds = Number(process.env.BENCH_SECONDS ?? 10);

/**
 * An unauthenticated RPC that does nothing: the baseline, in the same process, on a listener built
 * by the same server code but without the panel's gates (the panel's listener refuses any
 * procedure its access table does not list).
 */
const noop: ServiceModule = {
  name: "bench-noop",
  listener: "admin",
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

const panel = await startBenchPanel([noop]);
try {
  const url = panel.url;
  const ca = panel.ca;
  const rssBefore = process.memoryUsage().rss;
  const enrollStart = Date.now();
  const enrolled = await enrollAgents(panel, agents);
  console.log(`enrolled ${agents} agents in ${((Date.now() - enrollStart) / 1000).toFixed(1)} s`);
  const clients = enrolled.map((a) => agentClient(url, ca, a));
  const beat = { uptimeSeconds: 1n, health: AgentHealth.OK, agentVersion: "0.1.0", load: { one: 0.1, five: 0.1, fifteen: 0.1 } };
  await Promise.all(clients.map((c) => c.heartbeat(beat))); // connect everyone first
  const signed = await drive(clients, (c) => c.heartbeat(beat));
  const rss = process.memoryUsage().rss;
  console.log(
    `heartbeats, ${agents} agents on ${agents} connections, ${seconds} s: ${signed.rate.toFixed(0)}/s  p50 ${signed.p50.toFixed(1)} ms  p99 ${signed.p99.toFixed(1)} ms  errors ${signed.errors}`,
  );
  console.log(
    `process RSS (panel and load generator together) ${(rss / 2 ** 20).toFixed(0)} MiB, +${((rss - rssBefore) / 2 ** 20).toFixed(0)} MiB for the agents' connections`,
  );

  const noopUrl = panel.host.listeners.find((l) => l.name === "admin")!.url;
  const noopClients = enrolled.map(() => {
    const session = new Http2SessionManager(noopUrl, {}, { ca });
    return createClient(LicenseService, createConnectTransport({ baseUrl: noopUrl, httpVersion: "2", sessionManager: session }));
  });
  await Promise.all(noopClients.map((c) => c.getPlanCatalog({})));
  const baseline = await drive(noopClients, (c) => c.getPlanCatalog({}));
  console.log(
    `baseline no-op RPC, unauthenticated, same process and server code: ${baseline.rate.toFixed(0)}/s  p50 ${baseline.p50.toFixed(1)} ms  p99 ${baseline.p99.toFixed(1)} ms`,
  );
  console.log(`ratio heartbeats/no-op  ${(signed.rate / baseline.rate).toFixed(3)}`);
} finally {
  await panel.stop();
}
