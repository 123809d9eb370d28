import { timingSafeEqual, createHash } from "node:crypto";
import { readdir } from "node:fs/promises";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { poolState, type Knex } from "./db.js";

/**
 * What this process does, for `GET /metrics` (Prometheus text format): RPCs by service, method
 * and code with their latency, open streams, connected agents, heartbeat batches, and the
 * runtime's own figures (memory, event-loop lag, GC, open files). One registry per process; what
 * the databases hold is read at scrape time by `databaseMetrics`.
 */
export const processMetrics = new Registry();
collectDefaultMetrics({ register: processMetrics, prefix: "myosicam_" });
// Of prom-client's own figures, three walk every handle or file descriptor of the process on its
// event loop at each scrape: with 10,000 agents connected, 17 % of the panel's CPU went to serving
// /metrics once a second (a CPU profile of the scale benchmark's fan-out), time the agents' calls
// waited for. Active handles and resources by type are dropped (connected agents and open streams
// say what they would); open files are counted off the event loop instead, below.
for (const name of ["nodejs_active_handles", "nodejs_active_handles_total", "nodejs_active_resources", "nodejs_active_resources_total", "process_open_fds"]) {
  processMetrics.removeSingleMetric(`myosicam_${name}`);
}
new Gauge({
  name: "myosicam_process_open_fds",
  help: "Open file descriptors (connections, files, sockets): compare with myosicam_process_max_fds",
  registers: [processMetrics],
  async collect() {
    // readdir runs on libuv's thread pool: the event loop only gets the entries.
    const fds = await readdir("/proc/self/fd").catch(() => undefined);
    if (fds !== undefined) this.set(fds.length - 1); // less the descriptor reading the directory
  },
});

export const rpcDuration = new Histogram({
  name: "myosicam_rpc_duration_seconds",
  help: "Calls by service, method and outcome (Connect code), and how long they took; streams until they ended",
  labelNames: ["service", "method", "code"],
  buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60],
  registers: [processMetrics],
});

export const openStreams = new Gauge({
  name: "myosicam_open_streams",
  help: "Server streams open now, by service and method",
  labelNames: ["service", "method"],
  registers: [processMetrics],
});

export const admissionRefusals = new Counter({
  name: "myosicam_rpc_admission_refused_total",
  help: "Calls refused at once with Unavailable and a retry hint because too many were pending (RPC_MAX_PENDING_CALLS)",
  registers: [processMetrics],
});

export const instanceSnapshotsStored = new Counter({
  name: "myosicam_instance_snapshots_stored_total",
  help: "Instance snapshots (every account and setting of one OScam instance) agents sent in Sync and this process stored; a sync of unchanged instances sends only their hashes and counts nothing",
  registers: [processMetrics],
});

export const connectedAgents = new Gauge({
  name: "myosicam_connected_agents",
  help: "Agents holding their command stream (AgentService.Subscribe) open on this process",
  registers: [processMetrics],
});

/** Where the delivery window's figures come from (set by the agents' service; one per process). */
let deliveriesSource: (() => { inFlight: number; waiting: number }) | undefined;
export const watchDeliveries = (source: () => { inFlight: number; waiting: number }) => {
  deliveriesSource = source;
};
new Gauge({
  name: "myosicam_command_deliveries",
  help: "Commands delivered and not yet answered (in_flight), and command streams waiting for room to deliver (waiting): AGENT_COMMANDS_IN_FLIGHT",
  labelNames: ["state"],
  registers: [processMetrics],
  collect() {
    const figures = deliveriesSource?.();
    if (!figures) return;
    this.set({ state: "in_flight" }, figures.inFlight);
    this.set({ state: "waiting" }, figures.waiting);
  },
});

export const heartbeatBatchSize = new Histogram({
  name: "myosicam_heartbeat_batch_size",
  help: "Heartbeats written per database statement",
  buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
  registers: [processMetrics],
});

export const heartbeatWriteSeconds = new Histogram({
  name: "myosicam_heartbeat_write_seconds",
  help: "How long one batch of heartbeats took to write",
  buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [processMetrics],
});

/** What the request-context interceptor tells about calls, as metrics. */
export const callMetrics = {
  finished: ({ service, method, code, seconds }: { service: string; method: string; code: string; seconds: number }) =>
    rpcDuration.observe({ service, method, code }, seconds),
  streamOpened: ({ service, method }: { service: string; method: string }) => {
    openStreams.inc({ service, method });
    if (service === agentStream.service && method === agentStream.method) connectedAgents.inc();
  },
  streamClosed: ({ service, method }: { service: string; method: string }) => {
    openStreams.dec({ service, method });
    if (service === agentStream.service && method === agentStream.method) connectedAgents.dec();
  },
};
const agentStream = { service: "myosicam.agent.v1.AgentService", method: "Subscribe" };

/** Figures read from the databases when scraped: pool usage, job queues, and (panel) commands by status. */
export function databaseMetrics(databases: ReadonlyArray<{ name: string; db: Knex; hasCommands: boolean }>): Registry {
  const registry = new Registry();
  new Gauge({
    name: "myosicam_db_pool_connections",
    help: "PostgreSQL pool connections by database and state (used, free, opening; waiting: callers waiting for one)",
    labelNames: ["database", "state"],
    registers: [registry],
    collect() {
      for (const { name, db } of databases) {
        const pool = poolState(db);
        if (!pool) continue;
        this.set({ database: name, state: "used" }, pool.used);
        this.set({ database: name, state: "free" }, pool.free);
        this.set({ database: name, state: "opening" }, pool.opening);
        this.set({ database: name, state: "waiting" }, pool.waiting);
      }
    },
  });
  new Gauge({
    name: "myosicam_job_queue_depth",
    help: "Jobs waiting or running, by database, queue and state",
    labelNames: ["database", "queue", "state"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const { name, db } of databases) {
        const { rows } = await db.raw<{ rows: Array<{ queue: string; state: string; n: number }> }>(
          "select name as queue, state::text, count(*)::int as n from pgboss.job where state in ('created', 'retry', 'active') group by 1, 2",
        );
        for (const r of rows) this.set({ database: name, queue: r.queue, state: r.state }, r.n);
      }
    },
  });
  new Gauge({
    name: "myosicam_command_queue_depth",
    help: "Agent commands not yet final, by status (pending: waiting for the agent; delivered: the agent is on it)",
    labelNames: ["status"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const { db, hasCommands } of databases) {
        if (!hasCommands) continue;
        const rows = await db("commands")
          .whereIn("status", ["pending", "delivered"])
          .groupBy("status")
          .select("status")
          .count<Array<{ status: string; n: string }>>({ n: "*" });
        this.set({ status: "pending" }, 0);
        this.set({ status: "delivered" }, 0);
        for (const r of rows) this.set({ status: r.status }, Number(r.n));
      }
    },
  });
  return registry;
}

/** Whether `header` is `Bearer <token>` (compared in constant time). */
export function metricsAuthorized(header: string | undefined, token: string): boolean {
  const given = /^Bearer (.+)$/.exec(header ?? "")?.[1] ?? "";
  const digest = (text: string) => createHash("sha256").update(text, "utf8").digest();
  return timingSafeEqual(digest(given), digest(token));
}
