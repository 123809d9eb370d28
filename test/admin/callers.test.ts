import { execFile } from "node:child_process";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { selectServices } from "../../services/index.js";
import { startHost } from "../../services/host.js";
import { loadConfig } from "../../services/lib/config.js";
import { startAdminHost, type AdminHost } from "../helpers/admin-host.js";
import { newKey } from "../helpers/keys.js";

const repo = resolve(import.meta.dirname, "../..");
const test = suite("admin's callers: signed calls against the real admin listener");

const catalog = "/myosicam.license.v1.LicenseService/GetPlanCatalog";
let admin: AdminHost;

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e: unknown) => Code[ConnectError.from(e).code],
  );
const refusals = (callerId: string) => admin.db("hmac_refusals").where({ caller_id: callerId }).orderBy("id").select("reason", "request_id", "procedure");

test.before(async () => {
  admin = await startAdminHost("admin_callers");
});
test.after(async () => {
  await admin.stop();
});

test("a caller created in the registry can call what its allow-list names, and nothing else", async () => {
  const { secret } = await admin.callers.create({ id: "pricing", allowedProcedures: [catalog] });
  const client = admin.licenseClient("pricing", secret);
  assert.equal((await client.getPlanCatalog({})).plans, []);
  const code = await codeOf(client.validateLicense({ licenseKey: "mlk_aaaaaaaaaaaaaaaa", panelId: "0b7d3c55-8f0e-4d53-9a7e-2f4f7a0c9b11", usage: {} }));
  assert.is(code, "Unauthenticated");
  assert.equal(
    (await refusals("pricing")).map((r) => r.reason),
    ["forbidden_method"],
  );
});

test("the secret is stored only as an envelope sealed with ADMIN_ENCRYPTION_KEY", async () => {
  const { secret } = await admin.callers.create({ id: "sealed", allowedProcedures: [catalog] });
  const row = await admin.db("callers").where({ id: "sealed" }).first();
  assert.match(row.secret, /^enc:v1:[0-9a-f]{16}:/);
  assert.not.ok(JSON.stringify(row).includes(secret));
});

test("a revoked caller is refused on its very next call, and the refusal is audited with the request id", async () => {
  const { secret } = await admin.callers.create({ id: "revokable", allowedProcedures: [catalog] });
  const client = admin.licenseClient("revokable", secret);
  assert.is(await codeOf(client.getPlanCatalog({})), "ok");
  await admin.callers.setStatus("revokable", "inactive");
  assert.is(await codeOf(client.getPlanCatalog({}, { headers: { "x-request-id": "after-revoke-1" } })), "Unauthenticated");
  const [refusal] = await refusals("revokable");
  assert.is(refusal.reason, "inactive_caller");
  assert.is(refusal.request_id, "after-revoke-1");
  assert.is(refusal.procedure, catalog);
  await admin.callers.setStatus("revokable", "active");
  assert.is(await codeOf(client.getPlanCatalog({})), "ok", "re-activated");
});

test("rotation with an overlap accepts the old and the new secret; without one the old is refused at once", async () => {
  const { secret: first } = await admin.callers.create({ id: "rotating", allowedProcedures: [catalog] });
  const { secret: second, caller } = await admin.callers.rotate("rotating", 3600);
  assert.ok(caller.previousSecretValidUntil, "the old secret has a deadline");
  assert.is.not(second, first);
  assert.is(await codeOf(admin.licenseClient("rotating", first).getPlanCatalog({})), "ok", "old secret during the overlap");
  assert.is(await codeOf(admin.licenseClient("rotating", second).getPlanCatalog({})), "ok", "new secret");
  const { secret: third } = await admin.callers.rotate("rotating", 0);
  assert.is(await codeOf(admin.licenseClient("rotating", second).getPlanCatalog({})), "Unauthenticated", "no overlap: the old secret is refused");
  assert.is(await codeOf(admin.licenseClient("rotating", first).getPlanCatalog({})), "Unauthenticated", "the secret before that too");
  assert.is(await codeOf(admin.licenseClient("rotating", third).getPlanCatalog({})), "ok");
});

test("an unknown caller and a wrong secret are refused with their reason codes, never logging the signature", async () => {
  await admin.callers.create({ id: "known", allowedProcedures: [catalog] });
  assert.is(await codeOf(admin.licenseClient("nobody", "0".repeat(64)).getPlanCatalog({})), "Unauthenticated");
  assert.is(await codeOf(admin.licenseClient("known", "1".repeat(64)).getPlanCatalog({})), "Unauthenticated");
  assert.equal(
    (await refusals("nobody")).map((r) => r.reason),
    ["unknown_caller"],
  );
  assert.equal(
    (await refusals("known")).map((r) => r.reason),
    ["bad_signature"],
  );
  assert.not.match(admin.logs.text(), /"x-signature"|[0-9a-f]{64}/i);
});

test("an allow-list naming an unknown method is refused with the methods that exist", async () => {
  const err = await admin.callers
    .create({ id: "typo", allowedProcedures: ["/myosicam.license.v1.LicenseService/GetPlans"] })
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((err as ConnectError).code, Code.InvalidArgument);
  assert.match((err as ConnectError).rawMessage, /has no method GetPlans; it has ValidateLicense, GetPlanCatalog, ReportUsage/);
});

test("the shell reference signer works against the running admin service: accepted once, refused when replayed", async () => {
  const { secret } = await admin.callers.create({ id: "shell", allowedProcedures: [catalog] });
  const sh = () =>
    promisify(execFile)("sh", [join(repo, "docs/examples/sign-request.sh"), catalog, "{}"], {
      env: {
        PATH: process.env.PATH,
        MYOSICAM_URL: admin.url,
        MYOSICAM_CALLER_ID: "shell",
        MYOSICAM_SECRET: secret,
        MYOSICAM_CACERT: admin.certFile,
        MYOSICAM_TIMESTAMP: String(Math.floor(Date.now() / 1000)),
        MYOSICAM_NONCE: "0123456789abcdef0123456789abcdef",
      },
    });
  const first = await sh();
  assert.match(first.stdout, /^\{/, first.stdout);
  assert.not.match(first.stdout, /unauthenticated/);
  const again = await sh().then(
    (r) => r.stdout,
    (err: { stdout?: string }) => err.stdout ?? "refused",
  );
  assert.match(again, /unauthenticated/);
  assert.equal(
    (await refusals("shell")).map((r) => r.reason),
    ["replay"],
  );
});

test("admin refuses to start when caller secrets are sealed with a key it does not hold", async () => {
  const config = loadConfig({
    MYOSICAM_DATA_DIR: admin.config.dataDir,
    ADMIN_DATABASE_URL: admin.config.adminDatabaseUrl,
    ADMIN_PORT: "0",
    PANEL_PORT: "0",
    ADMIN_ENCRYPTION_KEY: newKey,
  });
  const err = await startHost(config, selectServices(["admin"]), admin.logs.log).then(
    async (h) => {
      await h.stop();
      return undefined;
    },
    (e: Error) => e,
  );
  assert.ok(err, "start must be refused");
  assert.match(err.message, /^ADMIN_ENCRYPTION_KEY: caller secrets are sealed with key [0-9a-f]{16}, which is not configured/);
});

test.run();
