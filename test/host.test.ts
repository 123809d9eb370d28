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
import { newKey, oldKey } from "./helpers/keys.js";
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
    ADMIN_ENCRYPTION_KEY: oldKey,
  });
  host = await startHost(config, selectServices(["admin"]), logs.log);
});
test.after(async () => {
  await host.stop();
  await panelDb.drop();
  await adminDb.drop();
  await dir.remove();
});

test("a hosted service is reached through an in-memory transport, with the same interceptors but no signature check", async () => {
  const client = createClient(LicenseService, host.transportFor(LicenseService));
  const catalog = await client.getPlanCatalog({}, { headers: { "x-request-id": "in-memory-1" } });
  assert.equal(catalog.plans, [], "a fresh admin database has no public plans");
  const line = logs.lines().find((l) => l.requestId === "in-memory-1");
  assert.ok(line, "the request-context interceptor ran");
  assert.is(line.svc, "admin");
  const invalid = await client.validateLicense({ licenseKey: "short", panelId: "not-a-uuid" }).catch((e: unknown) => ConnectError.from(e));
  assert.is((invalid as ConnectError).code, Code.InvalidArgument, "validation runs in memory too");
});

test("asking for a service this process does not host is a clear error", () => {
  assert.throws(() => host.transportFor(AgentService), /myosicam\.agent\.v1\.AgentService is not hosted in this process/);
});

test("only the crypto service is handed the panel's encryption key, only admin its own", async () => {
  const seen = new Map<string, unknown>();
  const seenAdmin = new Map<string, unknown>();
  const { serviceRegistry } = await import("../services/index.js");
  const probes = serviceRegistry.map((s) => ({
    ...s,
    listener: "in-process" as const,
    routes: (deps: Parameters<typeof s.routes>[0]) => {
      seen.set(s.name, deps.config.encryptionKeyHex);
      seenAdmin.set(s.name, deps.config.adminEncryptionKeyHex);
      return () => {};
    },
    checkStartup: undefined,
  }));
  const config = loadConfig({
    MYOSICAM_DATA_DIR: dir.path,
    DATABASE_URL: panelDb.url,
    ADMIN_DATABASE_URL: adminDb.url,
    PANEL_ENCRYPTION_KEY: newKey,
    ADMIN_ENCRYPTION_KEY: oldKey,
  });
  const probeHost = await startHost(config, probes, logs.log);
  await probeHost.stop();
  assert.is(seen.get("crypto"), newKey);
  assert.is(seen.get("agents"), undefined);
  assert.is(seen.get("admin"), undefined);
  assert.is(seen.get("licensing"), undefined);
  assert.is(seenAdmin.get("admin"), oldKey);
  for (const name of ["crypto", "jobs", "licensing", "agents"]) assert.is(seenAdmin.get(name), undefined, name);
});

test("only the admin database was opened and migrated", () => {
  assert.equal(Object.keys(host.installations), ["admin"]);
  assert.equal(
    host.listeners.map((l) => l.name),
    ["admin"],
  );
});

test.run();
