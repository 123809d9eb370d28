import { createClient, Code, ConnectError } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AdminService, CallerStatus } from "../../gen/myosicam/admin/v1/admin_pb.js";
import { createOperatorDesk } from "../../services/admin/operators.js";
import { startAdminHost, type AdminHost } from "../helpers/admin-host.js";

const test = suite("the admin API (myosicam.admin.v1) behind admin operator sessions");

let admin: AdminHost;
const password = "correct horse battery staple";
const api = (token?: string, ip?: string) =>
  createClient(
    AdminService,
    createConnectTransport({
      baseUrl: admin.url,
      httpVersion: "2",
      nodeOptions: { ca: admin.ca, ...(ip ? { localAddress: ip } : {}) },
      interceptors: token ? [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))] : [],
    }),
  );
const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e: unknown) => Code[ConnectError.from(e).code],
  );

test.before(async () => {
  admin = await startAdminHost("admin_api");
  await createOperatorDesk(admin.db).create("Vendor@Example.com", password);
  await createOperatorDesk(admin.db).create("other@example.com", password);
});
test.after(async () => {
  await admin.stop();
});

test("every method but Login needs a session", async () => {
  const err = await api()
    .listCallers({})
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((err as ConnectError).code, Code.Unauthenticated);
  assert.match((err as ConnectError).rawMessage, /call Login, then send Authorization: Bearer/);
  assert.is(await codeOf(api("f".repeat(64)).listCallers({})), "Unauthenticated", "an unknown token");
});

test("a NUL byte in Login, or in any admin method's input, is InvalidArgument naming the field", async () => {
  const login = await api()
    .login({ email: "vendor@example.com\u0000", password })
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((login as ConnectError).code, Code.InvalidArgument);
  assert.match((login as ConnectError).rawMessage, /^email: must not contain a NUL byte$/);
  const session = await api()
    .login({ email: "vendor@example.com", password })
    .catch((e: unknown) => assert.unreachable(String(e)));
  const plan = await api(session!.sessionToken)
    .setPlan({ id: "nul", name: "N\u0000", maxServers: 1, maxInstances: 1, currency: "EUR" })
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((plan as ConnectError).code, Code.InvalidArgument);
  assert.match((plan as ConnectError).rawMessage, /^name: must not contain a NUL byte$/, (plan as ConnectError).rawMessage);
});

test("a signed-in operator manages callers, plans and licenses; each mutation is audited", async () => {
  const session = await api().login({ email: "vendor@example.com", password });
  assert.match(session.sessionToken, /^[0-9a-f]{64}$/);
  const client = api(session.sessionToken);
  const created = await client.createCaller({ id: "billing", allowedProcedures: ["/myosicam.license.v1.LicenseService/GetPlanCatalog"] });
  assert.match(created.secret, /^[0-9a-f]{64}$/);
  const revoked = await client.setCallerStatus({ id: "billing", status: CallerStatus.INACTIVE });
  assert.is(revoked.caller?.status, CallerStatus.INACTIVE);
  await client.setPlan({ id: "pro", name: "Pro", maxServers: 5, maxInstances: 20, monthlyPriceMinor: 1000n, currency: "EUR", public: true });
  const issued = await client.issueLicense({ customer: "Example Ltd", planId: "pro" });
  assert.match(issued.licenseKey, /^mlk_/);
  assert.is((await client.listLicenses({})).licenses[0]?.keyHint, issued.licenseKey.slice(0, 10));
  await client.revokeLicense({ id: issued.license!.id, reason: "test" });
  const audit = await admin.db("admin_audit").orderBy("id").select("actor", "action", "target", "request_id");
  assert.equal(
    audit.map((a) => `${a.actor} ${a.action} ${a.target}`),
    [
      "vendor@example.com caller.create billing",
      "vendor@example.com caller.revoke billing",
      "vendor@example.com plan.set pro",
      `vendor@example.com license.issue ${issued.license!.id}`,
      `vendor@example.com license.revoke ${issued.license!.id}`,
    ],
  );
  assert.ok(
    audit.every((a) => a.request_id),
    "with the request id",
  );
  assert.not.ok(admin.logs.text().includes(issued.licenseKey), "the license key is not logged");
  assert.not.ok(admin.logs.text().includes(created.secret), "the caller secret is not logged");
  assert.not.ok(admin.logs.text().includes(password), "the password is not logged");
});

test("logout ends the session on the server", async () => {
  const { sessionToken } = await api().login({ email: "vendor@example.com", password });
  assert.is(await codeOf(api(sessionToken).listPlans({})), "ok");
  await api(sessionToken).logout({});
  assert.is(await codeOf(api(sessionToken).listPlans({})), "Unauthenticated");
});

test("a wrong password and an unknown user get the same answer", async () => {
  const wrong = await api()
    .login({ email: "other@example.com", password: "nope" })
    .catch((e: unknown) => ConnectError.from(e));
  const unknown = await api()
    .login({ email: "nobody@example.com", password: "nope" })
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((wrong as ConnectError).code, Code.Unauthenticated);
  assert.is((wrong as ConnectError).rawMessage, (unknown as ConnectError).rawMessage);
});

test("after 5 failed logins in a minute for one address, even the right password is refused", async () => {
  await admin.db("admin_login_failures").delete();
  for (let i = 0; i < 5; i++) assert.is(await codeOf(api().login({ email: "other@example.com", password: `wrong-${i}` })), "Unauthenticated");
  assert.is(await codeOf(api().login({ email: "other@example.com", password })), "ResourceExhausted");
});

test("the passwords are stored as Argon2id hashes", async () => {
  const rows = await admin.db("admin_operators").select("password_hash");
  assert.ok(rows.every((r) => r.password_hash.startsWith("$argon2id$")));
});

test.run();
