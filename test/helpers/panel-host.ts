import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AgentService } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { RegistrationService } from "../../gen/myosicam/agent/v1/registration_pb.js";
import { selectServices } from "../../services/index.js";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { startHost, type Host } from "../../services/host.js";
import { loadConfig, type Config } from "../../services/lib/config.js";
import { createDatabase, type Knex } from "../../services/lib/db.js";
import { freePort } from "../../services/lib/embedded-postgres.js";
import { createSignedTransport } from "../../services/lib/hmac/signing-client.js";
import { writeLicenseAnswer, licenseKeyHash } from "../../services/lib/licensing/store.js";
import { makeTempDir } from "./cli.js";
import { createTestDatabase, type TestDatabase } from "./database.js";
import { newKey } from "./keys.js";
import { captureLogs } from "./log-capture.js";
import { startTcpRelay, type TcpRelay } from "./tcp-relay.js";

/** The license key test panels are configured with. */
export const testLicenseKey = "mlk_test_license_key_0000000000";

/**
 * The panel's agent-facing services (crypto, jobs, agents) on a real HTTPS listener and a fresh
 * database, with a license answer stored as if admin had given it (quotas chosen by the test).
 */
export interface PanelHost {
  host: Host;
  url: string;
  ca: string;
  certFile: string;
  dataDir: string;
  config: Config;
  db: Knex;
  logs: ReturnType<typeof captureLogs>;
  registration(): ReturnType<typeof createClient<typeof RegistrationService>>;
  agent(serverId: string, token: string): ReturnType<typeof createClient<typeof AgentService>>;
  /** Creates an install token for `server` and registers with it: the server id, agent token and a signed client. */
  enroll(server: string): Promise<{ id: string; token: string; client: ReturnType<typeof createClient<typeof AgentService>> }>;
  setLicense(maxServers: number, maxInstances?: number): Promise<void>;
  /** Stops the listener and jobs, keeping database, data directory and port. */
  pause(): Promise<void>;
  /** Starts again after `pause`, on the same port. */
  resume(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A panel (crypto, jobs, agents, install) on its own test database. `options.databaseUrl` changes
 * the URL the panel connects with (e.g. through a relay a test can take down); `db` stays direct.
 */
export async function startPanelHost(
  label: string,
  env: Record<string, string> = {},
  options: { databaseUrl?: (url: string) => string } = {},
): Promise<PanelHost> {
  const dir = await makeTempDir(label);
  const database: TestDatabase = await createTestDatabase(label);
  const logs = captureLogs();
  const port = await freePort();
  const config = loadConfig({
    MYOSICAM_DATA_DIR: dir.path,
    DATABASE_URL: options.databaseUrl?.(database.url) ?? database.url,
    PANEL_PORT: String(port),
    ADMIN_PORT: "0",
    PANEL_ENCRYPTION_KEY: newKey,
    PANEL_LICENSE_KEY: testLicenseKey,
    JOB_POLL_INTERVAL_SECONDS: "0.5",
    ...env,
  });
  const services = selectServices(["crypto", "jobs", "agents", "install", "panel"]);
  let host = await startHost(config, services, logs.log);
  const db = createDatabase(database.url, logs.log);
  const url = host.listeners[0]!.url;
  const ca = await readFile(host.tls.certFile, "utf8");
  let stopped = false;
  const panel: PanelHost = {
    get host() {
      return host;
    },
    url,
    ca,
    certFile: host.tls.certFile,
    dataDir: dir.path,
    config,
    db,
    logs,
    registration: () => createClient(RegistrationService, createConnectTransport({ baseUrl: url, httpVersion: "2", nodeOptions: { ca } })),
    agent: (serverId, token) => createClient(AgentService, createSignedTransport({ baseUrl: url, credentials: { callerId: serverId, secret: token }, ca })),
    async enroll(server) {
      const { token: installToken } = await createInstallToken(db, { server, createdBy: "test" });
      const reg = await panel.registration().register({
        installToken,
        agentId: randomUUID(),
        hostname: server,
        ip: "192.0.2.1",
        os: "linux",
        osVersion: "test",
        arch: "x64",
        agentVersion: "0.1.0",
      });
      return { id: reg.serverId, token: reg.agentToken, client: panel.agent(reg.serverId, reg.agentToken) };
    },
    async setLicense(maxServers, maxInstances = 0) {
      await writeLicenseAnswer(
        db,
        licenseKeyHash(testLicenseKey),
        {
          valid: true,
          state: "active",
          planId: "test",
          planName: "Test",
          quotas: { maxServers, maxInstances },
          message: "",
          usage: { servers: 0, instances: 0 },
        },
        new Date(),
      );
    },
    pause: () => host.stop(),
    async resume() {
      host = await startHost(config, services, logs.log);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await host.stop();
      await db.destroy();
      await database.drop();
      await dir.remove();
    },
  };
  return panel;
}

/**
 * A panel whose database connections go through a TCP relay the test controls (`relay.down()`
 * cuts them and refuses new ones: a database server killed, as the panel sees it).
 */
export async function startPanelHostBehindDatabaseRelay(label: string, env: Record<string, string> = {}): Promise<{ panel: PanelHost; relay: TcpRelay }> {
  const postgresPort = Number(new URL(process.env.MYOSICAM_TEST_POSTGRES_URL!).port);
  const relay = await startTcpRelay(postgresPort);
  try {
    const panel = await startPanelHost(label, env, {
      databaseUrl: (url) => {
        const viaRelay = new URL(url);
        viaRelay.port = String(relay.port);
        return viaRelay.toString();
      },
    });
    return { panel, relay };
  } catch (err) {
    await relay.stop();
    throw err;
  }
}
