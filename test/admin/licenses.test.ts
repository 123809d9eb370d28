import { randomUUID } from "node:crypto";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { LicenseState } from "../../gen/myosicam/license/v1/license_pb.js";
import { startAdminHost, type AdminHost } from "../helpers/admin-host.js";

const test = suite("LicenseService over signed HTTPS: valid, expired, revoked, over quota, unknown, bound");

let admin: AdminHost;
let panel: ReturnType<AdminHost["licenseClient"]>;
const panelId = randomUUID();

test.before(async () => {
  admin = await startAdminHost("admin_licenses");
  const { secret } = await admin.callers.create({ id: "panel", allowedProcedures: ["/myosicam.license.v1.LicenseService/*"] });
  panel = admin.licenseClient("panel", secret);
  await admin.book.setPlan({
    id: "pro",
    name: "Pro",
    maxServers: 3,
    maxInstances: 10,
    monthlyPriceMinor: 4900n,
    currency: "EUR",
    features: ["alerts"],
    public: true,
  });
  await admin.book.setPlan({
    id: "secret-deal",
    name: "Deal",
    maxServers: 0,
    maxInstances: 0,
    monthlyPriceMinor: 0n,
    currency: "EUR",
    features: [],
    public: false,
  });
});
test.after(async () => {
  await admin.stop();
});

test("a valid license answers its plan, quotas and expiry, and binds to the first panel", async () => {
  const expires = new Date(Date.now() + 30 * 86400_000);
  const { key, license } = await admin.book.issue({ customer: "Example Ltd", planId: "pro", expiresAt: expires });
  assert.match(key, /^mlk_[A-Za-z0-9_-]{43}$/);
  const res = await panel.validateLicense({ licenseKey: key, panelId, usage: { servers: 2, instances: 5 } });
  assert.ok(res.valid, res.message);
  assert.is(res.state, LicenseState.ACTIVE);
  assert.is(res.plan?.name, "Pro");
  assert.equal({ ...res.quotas, $typeName: undefined }, { $typeName: undefined, maxServers: 3, maxInstances: 10 });
  assert.is(timestampDate(res.expiresAt!).getTime(), expires.getTime());
  const [row] = await admin.db("licenses").where({ id: license.id }).select("panel_id", "last_usage_servers", "key_hash");
  assert.is(row.panel_id, panelId);
  assert.is(row.last_usage_servers, 2);
  assert.is.not(row.key_hash, key, "only the hash is stored");
  assert.not.ok(JSON.stringify(await admin.db("licenses").select("*")).includes(key));

  const elsewhere = await panel.validateLicense({ licenseKey: key, panelId: randomUUID(), usage: { servers: 0, instances: 0 } });
  assert.not.ok(elsewhere.valid);
  assert.match(elsewhere.message, /bound to another panel installation/);
});

test("usage above a quota is not valid and says which quota", async () => {
  const { key } = await admin.book.issue({ customer: "Big", planId: "pro", expiresAt: null });
  const res = await panel.validateLicense({ licenseKey: key, panelId: randomUUID(), usage: { servers: 4, instances: 5 } });
  assert.not.ok(res.valid);
  assert.is(res.state, LicenseState.ACTIVE);
  assert.is(res.message, "over quota: 4 servers in use, the plan allows 3");
  const report = await panel
    .reportUsage({ licenseKey: key, panelId: randomUUID(), usage: { servers: 1, instances: 11 } })
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((report as ConnectError).code, Code.PermissionDenied, "usage from another panel than the bound one");
});

test("an expired license is refused with its date", async () => {
  const { key, license } = await admin.book.issue({ customer: "Late", planId: "pro", expiresAt: new Date(Date.now() + 60_000) });
  await admin
    .db("licenses")
    .where({ id: license.id })
    .update({ expires_at: new Date("2026-10-01T23:59:59Z") });
  const res = await panel.validateLicense({ licenseKey: key, panelId, usage: {} });
  assert.not.ok(res.valid);
  assert.is(res.state, LicenseState.EXPIRED);
  assert.is(res.message, "license expired on 2026-10-01");
});

test("a revoked license is refused with the reason", async () => {
  const { key, license } = await admin.book.issue({ customer: "Gone", planId: "pro", expiresAt: null });
  await admin.book.revoke(license.id, "unpaid");
  const res = await panel.validateLicense({ licenseKey: key, panelId, usage: {} });
  assert.not.ok(res.valid);
  assert.is(res.state, LicenseState.REVOKED);
  assert.match(res.message, /^license was revoked on \d{4}-\d{2}-\d{2} \(unpaid\)$/);
});

test("an unknown key is refused as unknown", async () => {
  const res = await panel.validateLicense({ licenseKey: "mlk_doesnotexist0000000000", panelId, usage: {} });
  assert.is(res.state, LicenseState.UNKNOWN);
  assert.not.ok(res.valid);
});

test("a malformed key is InvalidArgument naming the field, after the signature was checked", async () => {
  const err = await panel.validateLicense({ licenseKey: "short", panelId, usage: {} }).catch((e: unknown) => ConnectError.from(e));
  assert.is((err as ConnectError).code, Code.InvalidArgument);
  assert.match((err as ConnectError).rawMessage, /license_key/);
});

test("the catalog lists public plans only, cheapest first", async () => {
  const res = await panel.getPlanCatalog({});
  assert.equal(
    res.plans.map((p) => p.id),
    ["pro"],
  );
  assert.is(res.plans[0]!.monthlyPriceMinor, 4900n);
  assert.equal(res.plans[0]!.features, ["alerts"]);
});

test.run();
