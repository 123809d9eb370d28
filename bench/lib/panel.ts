/**
 * What the panel benchmarks share: a panel (crypto, jobs, agents and the operator API in this process) on an
 * embedded PostgreSQL in a temporary directory with an unlimited license, and simulated agents
 * enrolled through the real RegistrationService, each with its own signed HTTP/2 TLS connection.
 */
import { randomUUID } from "node:crypto";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AgentService } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { RegistrationService } from "../../gen/myosicam/agent/v1/registration_pb.js";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { selectServices } from "../../services/index.js";
import { startHost, type Host } from "../../services/host.js";
import { generateKeyHex } from "../../services/lib/config-file.js";
import { loadConfig } from "../../services/lib/config.js";
import { createDatabase, type Knex } from "../../services/lib/db.js";
import { startEmbeddedPostgres } from "../../services/lib/embedded-postgres.js";
import { createSignedTransport } from "../../services/lib/hmac/signing-client.js";
import { licenseKeyHash, writeLicenseAnswer } from "../../services/lib/licensing/store.js";
import { createLogger } from "../../services/lib/log.js";
import type { ServiceModule } from "../../services/lib/service-module.js";

export const benchLog = createLogger({ level: "silent" });

export interface BenchPanel {
  host: Host;
  /** The data directory (the owner's CLI credential is in it). */
  dataDir: string;
  db: Knex;
  url: string;
  ca: string;
  stop(): Promise<void>;
}

/** Starts the panel; `extra` services are hosted next to it (e.g. a no-op baseline). */
export async function startBenchPanel(extra: ServiceModule[] = []): Promise<BenchPanel> {
  const root = await mkdtemp(join(tmpdir(), "myosicam-bench-"));
  await chmod(root, 0o711);
  const postgres = await startEmbeddedPostgres({ directory: join(root, "pg"), port: 0, log: benchLog });
  await postgres.ensureDatabase("panel");
  const licenseKey = "mlk_bench_license_key_00000000";
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
  const host = await startHost(config, [...selectServices(["crypto", "jobs", "agents", "panel"]), ...extra], benchLog);
  const db = createDatabase(postgres.url("panel"), benchLog);
  await writeLicenseAnswer(
    db,
    licenseKeyHash(licenseKey),
    { valid: true, state: "active", quotas: { maxServers: 0, maxInstances: 0 }, message: "", usage: { servers: 0, instances: 0 } },
    new Date(),
  );
  return {
    host,
    dataDir: root,
    db,
    url: host.listeners[0]!.url,
    ca: host.tls.cert,
    async stop() {
      await db.destroy();
      await host.stop();
      await postgres.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}

export interface BenchAgent {
  serverId: string;
  agentToken: string;
}

/** Enrolls `count` agents (install token → Register), 50 at a time. */
export async function enrollAgents(panel: BenchPanel, count: number): Promise<BenchAgent[]> {
  const registration = createClient(RegistrationService, createConnectTransport({ baseUrl: panel.url, httpVersion: "2", nodeOptions: { ca: panel.ca } }));
  const enrolled: BenchAgent[] = [];
  for (let i = 0; i < count; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, count - i) }, async (_, j) => {
        const { token } = await createInstallToken(panel.db, { server: `bench-${i + j}`, createdBy: "bench" });
        return registration.register({
          installToken: token,
          agentId: randomUUID(),
          hostname: `bench-${i + j}`,
          ip: "192.0.2.1",
          os: "linux",
          osVersion: "bench",
          arch: "x64",
          agentVersion: "0.1.0",
        });
      }),
    );
    enrolled.push(...batch.map((a) => ({ serverId: a.serverId, agentToken: a.agentToken })));
  }
  return enrolled;
}

/** An agent's client with its own transport, so its own HTTP/2 TLS connection, signing every call. */
export function agentClient(url: string, ca: string, agent: BenchAgent): Client<typeof AgentService> {
  return createClient(AgentService, createSignedTransport({ baseUrl: url, credentials: { callerId: agent.serverId, secret: agent.agentToken }, ca }));
}
