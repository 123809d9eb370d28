import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentService } from "../gen/myosicam/agent/v1/agent_pb.js";
import { LicenseService } from "../gen/myosicam/license/v1/license_pb.js";
import { selectServices } from "../services/index.js";
import { startHost, type Host } from "../services/host.js";
import { loadConfig } from "../services/lib/config.js";
import { makeTempDir } from "./helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";
import { newKey } from "./helpers/keys.js";
import { captureLogs } from "./helpers/log-capture.js";

const test = suite("one process hosting services that call each other in memory");

let panelDb: TestDatabase;
let adminDb: TestDatabase;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
let host: Host;
const logs = captureLogs();

test.before(async () => {
  dir = await makeTempDir("host");
  panelDb = await createTestDatabase("host_panel");
  adminDb = await createTestDatabase("host_admin");
  const config = loadConfig({
    MYOSICAM_DATA_DIR: dir.path,
    DATABASE_URL: panelDb.url,
    ADMIN_DATABASE_URL: adminDb.url,
    PANEL_PORT: "0",
    ADMIN_PORT: "0",
  });
  host = await startHost(config, selectServices(["admin"]), logs.log);
});
test.after(async () => {
  await host.stop();
  await panelDb.drop();
  await adminDb.drop();
  await dir.remove();
});

test("a hosted service is reached through an in-memory transport, with the same interceptors", async () => {
  const client = createClient(LicenseService, host.transportFor(LicenseService));
  const err = await client.getPlanCatalog({}, { headers: { "x-request-id": "in-memory-1" } }).catch((e: unknown) => ConnectError.from(e));
  assert.is((err as ConnectError).code, Code.Unimplemented);
  const line = logs.lines().find((l) => l.requestId === "in-memory-1");
  assert.ok(line, "the request-context interceptor ran");
  assert.is(line.svc, "admin");
  const invalid = await client
    .validateLicense({ licenseKey: "short", panelId: "not-a-uuid" })
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((invalid as ConnectError).code, Code.InvalidArgument, "validation runs in memory too");
});

test("asking for a service this process does not host is a clear error", () => {
  assert.throws(() => host.transportFor(AgentService), /myosicam\.agent\.v1\.AgentService is not hosted in this process/);
});

test("only the crypto service is handed the encryption key", async () => {
  const seen = new Map<string, unknown>();
  const { serviceRegistry } = await import("../services/index.js");
  const probes = serviceRegistry.map((s) => ({
    ...s,
    listener: "in-process" as const,
    routes: (deps: Parameters<typeof s.routes>[0]) => {
      seen.set(s.name, deps.config.encryptionKeyHex);
      return () => {};
    },
    checkStartup: undefined,
  }));
  const config = loadConfig({
    MYOSICAM_DATA_DIR: dir.path,
    DATABASE_URL: panelDb.url,
    ADMIN_DATABASE_URL: adminDb.url,
    PANEL_ENCRYPTION_KEY: newKey,
  });
  const probeHost = await startHost(config, probes, logs.log);
  await probeHost.stop();
  assert.is(seen.get("crypto"), newKey);
  assert.is(seen.get("agents"), undefined);
  assert.is(seen.get("admin"), undefined);
});

test("only the admin database was opened and migrated", () => {
  assert.equal(Object.keys(host.installations), ["admin"]);
  assert.equal(host.listeners.map((l) => l.name), ["admin"]);
});

test.run();
