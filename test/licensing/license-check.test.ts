import { randomUUID } from "node:crypto";
import { Code, type ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { migrationsFor } from "../../services/host.js";
import { createDatabase, migrateToLatest, type Knex } from "../../services/lib/db.js";
import { checkLicense, currentStanding, type LicenseCheckOptions } from "../../services/lib/licensing/check.js";
import { requireQuota, standingOf } from "../../services/lib/licensing/standing.js";
import { startAdminHost, type AdminHost } from "../helpers/admin-host.js";
import { createTestDatabase, type TestDatabase } from "../helpers/database.js";
import { captureLogs } from "../helpers/log-capture.js";

const test = suite("the panel's license check: last answer, 72 h grace, quotas");

let admin: AdminHost;
let panelDatabase: TestDatabase;
let db: Knex;
let secret: string;
const panelId = randomUUID();
const hour = 3600_000;

const check = (licenseKey: string | undefined, extra: Partial<LicenseCheckOptions> = {}) =>
  checkLicense({
    db,
    config: { licenseKey, panelCaller: { id: "panel", secret }, adminTlsCaFile: undefined },
    adminUrl: admin.url,
    ownCertificate: admin.ca,
    panelId,
    usage: { servers: 1, instances: 2 },
    timeoutMs: 5000,
    ...extra,
  });

test.before(async () => {
  admin = await startAdminHost("license_check");
  ({ secret } = await admin.callers.create({ id: "panel", allowedProcedures: ["/myosicam.license.v1.LicenseService/*"] }));
  await admin.book.setPlan({ id: "small", name: "Small", maxServers: 2, maxInstances: 4, monthlyPriceMinor: 0n, currency: "EUR", features: [], public: true });
  panelDatabase = await createTestDatabase("license_check_panel");
  db = createDatabase(panelDatabase.url, captureLogs().log);
  await migrateToLatest(db, migrationsFor("panel"));
});
test.after(async () => {
  await admin.stop();
  await db.destroy();
  await panelDatabase.drop();
});

test("without PANEL_LICENSE_KEY the panel is unlicensed and registration is refused", async () => {
  const standing = await check(undefined);
  assert.is(standing.state, "unlicensed");
  assert.throws(
    () => requireQuota(standing, { servers: 0, instances: 0 }, { servers: 1 }),
    (e: ConnectError) => e.code === Code.FailedPrecondition,
  );
});

test("a valid license is active; quotas are enforced with a clear ResourceExhausted", async () => {
  const { key } = await admin.book.issue({ customer: "A", planId: "small", expiresAt: null });
  const standing = await check(key);
  assert.ok(standing.reachedAdmin);
  assert.is(standing.state, "active");
  assert.equal(standing.quotas, { maxServers: 2, maxInstances: 4 });
  const { reachedAdmin: _reached, ...stored } = standing;
  assert.equal(await currentStanding(db, key), stored, "stored for every replica");
  requireQuota(standing, { servers: 1, instances: 2 }, { servers: 1 });
  const err = (() => {
    try {
      requireQuota(standing, { servers: 2, instances: 2 }, { servers: 1 });
    } catch (e) {
      return e as ConnectError;
    }
  })();
  assert.is(err?.code, Code.ResourceExhausted);
  assert.is(err?.rawMessage, "license quota reached: 2 of 2 servers in use (plan Small); remove a server or upgrade the license");
});

test("a revoked license is not usable as soon as the check sees it", async () => {
  const { key, license } = await admin.book.issue({ customer: "B", planId: "small", expiresAt: null });
  assert.is((await check(key)).state, "active");
  await admin.book.revoke(license.id, "fraud");
  const standing = await check(key);
  assert.is(standing.state, "invalid");
  assert.not.ok(standing.usable);
  assert.match(standing.message, /revoked .*\(fraud\)/);
});

test("an expired license is not usable", async () => {
  const { key, license } = await admin.book.issue({ customer: "C", planId: "small", expiresAt: new Date(Date.now() + hour) });
  await admin
    .db("licenses")
    .where({ id: license.id })
    .update({ expires_at: new Date(Date.now() - hour) });
  const standing = await check(key);
  assert.is(standing.state, "expired");
  assert.not.ok(standing.usable);
});

test("a wrong caller secret is reported in words naming the settings, and counts as not reaching admin", async () => {
  const { key } = await admin.book.issue({ customer: "D", planId: "small", expiresAt: null });
  const standing = await checkLicense({
    db,
    config: { licenseKey: key, panelCaller: { id: "panel", secret: "2".repeat(64) }, adminTlsCaFile: undefined },
    adminUrl: admin.url,
    ownCertificate: admin.ca,
    panelId,
    usage: { servers: 0, instances: 0 },
  });
  assert.not.ok(standing.reachedAdmin);
  assert.is(standing.state, "unverified");
  assert.match(standing.error!, /refused the panel's signature; check PANEL_CALLER_ID and PANEL_CALLER_SECRET/);
});

test("admin down: the last valid answer holds for 72 h, then the license counts as expired", async () => {
  const { key } = await admin.book.issue({ customer: "E", planId: "small", expiresAt: null });
  const t0 = new Date();
  assert.is((await check(key, { now: () => t0 })).state, "active");
  const url = admin.url;
  await admin.stop();

  const later = new Date(t0.getTime() + hour);
  const during = await checkLicense({
    db,
    config: { licenseKey: key, panelCaller: { id: "panel", secret }, adminTlsCaFile: undefined },
    adminUrl: url,
    ownCertificate: admin.ca,
    panelId,
    usage: { servers: 1, instances: 1 },
    now: () => later,
    timeoutMs: 5000,
  });
  assert.not.ok(during.reachedAdmin);
  assert.match(during.error!, /unreachable/);
  assert.is(during.state, "grace");
  assert.ok(during.usable, "registration keeps working during the grace period");
  assert.equal(during.quotas, { maxServers: 2, maxInstances: 4 }, "with the last known quotas");
  assert.is(during.graceEndsAt, new Date(t0.getTime() + 72 * hour).toISOString());

  assert.is((await currentStanding(db, key, new Date(t0.getTime() + 72 * hour - 1000))).state, "grace");
  const after = await currentStanding(db, key, new Date(t0.getTime() + 72 * hour + 1000));
  assert.is(after.state, "expired");
  assert.not.ok(after.usable);
  assert.match(after.message, /grace period ended/);
});

test("standing is computed from the record alone (pure)", () => {
  assert.is(standingOf(undefined, true, new Date()).state, "unverified");
  assert.is(standingOf({ lastError: "x", failedAt: new Date() }, true, new Date()).message, "the license could not be validated yet: x");
});

test.run();
