import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { migrationsFor } from "../services/host.js";
import { makeTempDir, runCli } from "./helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "./helpers/database.js";
import { getHttp2 } from "./helpers/https.js";

const test = suite("configured database servers instead of the embedded one");

let panelDb: TestDatabase;
let adminDb: TestDatabase;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
const env = () => ({
  MYOSICAM_DATA_DIR: join(dir.path, "data"),
  DATABASE_URL: panelDb.url,
  ADMIN_DATABASE_URL: adminDb.url,
  PANEL_PORT: "0",
  ADMIN_PORT: "0",
});

test.before(async () => {
  dir = await makeTempDir("external-db");
  panelDb = await createTestDatabase("panel");
  adminDb = await createTestDatabase("admin");
});
test.after(async () => {
  await panelDb.drop();
  await adminDb.drop();
  await dir.remove();
});

test("migrate applies every migration once, then reports nothing to do", async () => {
  const first = runCli(["migrate", "--json"], env());
  assert.is(await first.exited, 0, first.stderr());
  const names = (db: "panel" | "admin") =>
    migrationsFor(db)
      .map((m) => m.name)
      .sort();
  assert.equal(JSON.parse(first.stdout()), { applied: { panel: names("panel"), admin: names("admin") } });
  assert.ok(names("panel").includes("agents/0009_sealed_tables") && names("admin").includes("core/0001_installation"));
  const second = runCli(["migrate", "--json"], env());
  assert.is(await second.exited, 0, second.stderr());
  assert.equal(JSON.parse(second.stdout()), { applied: { panel: [], admin: [] } });
});

test("serve --services=admin runs only admin, on the configured database, with no embedded PostgreSQL", async () => {
  const serve = runCli(["serve", "--services=admin", "--json"], env());
  try {
    const report = await serve.firstJson<{ listeners: Record<string, { url: string }>; embeddedPostgresPort: number | null }>();
    assert.equal(Object.keys(report.listeners), ["admin"]);
    assert.is(report.embeddedPostgresPort, null);
    const ca = await readFile(join(dir.path, "data/tls/panel.crt"), "utf8");
    const ready = await getHttp2(`${report.listeners.admin!.url}/readyz`, ca);
    assert.is(ready.status, 200);
    assert.equal(JSON.parse(ready.body).checks, { adminDatabase: { reachable: true, pendingMigrations: 0 } });
  } finally {
    serve.child.kill("SIGTERM");
    assert.is(await serve.exited, 0, serve.stderr());
  }
});

test("readyz answers 503 when the database goes away, and names the check", async () => {
  const scratch = await createTestDatabase("vanishing");
  const serve = runCli(["serve", "--services=crypto,panel,agents", "--json"], { ...env(), DATABASE_URL: scratch.url });
  try {
    const report = await serve.firstJson<{ listeners: Record<string, { url: string }> }>();
    const ca = await readFile(join(dir.path, "data/tls/panel.crt"), "utf8");
    await scratch.drop();
    const ready = await getHttp2(`${report.listeners.panel!.url}/readyz`, ca);
    assert.is(ready.status, 503);
    const body = JSON.parse(ready.body);
    assert.is(body.status, "not_ready");
    assert.is(body.checks.panelDatabase.reachable, false);
    const health = await getHttp2(`${report.listeners.panel!.url}/healthz`, ca);
    assert.is(health.status, 200, "liveness does not depend on the database");
  } finally {
    serve.child.kill("SIGTERM");
    await serve.exited;
  }
});

test.run();
