import { Code, ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AuditService } from "../../gen/myosicam/panel/v1/audit_pb.js";
import { AuthService } from "../../gen/myosicam/panel/v1/auth_pb.js";
import { Role } from "../../gen/myosicam/panel/v1/common_pb.js";
import { ServerService } from "../../gen/myosicam/panel/v1/server_pb.js";
import { verifyAuditChain } from "../../services/panel/index.js";
import { cliWith } from "../helpers/cli.js";
import { apiClientWith, ownerApi, operatorSession, sessionApi } from "../helpers/operator-api.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("the audit log: a row per mutation in its transaction, hash-chained, verified, exported");

let panel: PanelHost;
const cli = cliWith(() => ({ MYOSICAM_DATA_DIR: panel.dataDir, DATABASE_URL: panel.config.databaseUrl!, LOG_LEVEL: "warn" }));
test.before(async () => {
  panel = await startPanelHost("audit");
});
test.after(() => panel.stop());

const lastRow = () => panel.db("audit_log").orderBy("id", "desc").first();

test("a mutation leaves one row naming actor, action, target, outcome, address and request id", async () => {
  const owner = await ownerApi(panel);
  let requestId = "";
  const added = await owner
    .client(ServerService)
    .addServer({ name: "audited-1" }, { headers: { "x-request-id": "req-audit-1" }, onHeader: (h) => (requestId = h.get("x-request-id") ?? "") });
  assert.is(requestId, "req-audit-1");
  const row = await lastRow();
  assert.is(row.actor_kind, "api_client");
  assert.is(row.actor_id, owner.clientId);
  assert.is(row.action, "ServerService.AddServer");
  assert.is(row.target, `server:${added.server!.id}`);
  assert.is(row.outcome, "ok");
  assert.is(row.ip, "127.0.0.1");
  assert.is(row.request_id, "req-audit-1");
});

test("reads leave no row; a refused mutation leaves one with its code and reason, and changes nothing", async () => {
  const viewer = await apiClientWith(panel, "audit-viewer", Role.VIEWER);
  const before = Number((await panel.db("audit_log").count("* as n"))[0]!.n);
  await viewer.client(ServerService).listServers({});
  assert.is(Number((await panel.db("audit_log").count("* as n"))[0]!.n), before, "a read is not audited");
  const err = await viewer
    .client(ServerService)
    .addServer({ name: "not-allowed" })
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((err as ConnectError).code, Code.PermissionDenied);
  const row = await lastRow();
  assert.is(row.actor_name, "audit-viewer");
  assert.is(row.action, "ServerService.AddServer");
  assert.is(row.outcome, "permission_denied");
  assert.match(row.detail, /needs the operator role/);
  assert.is(await panel.db("servers").where({ name: "not-allowed" }).first(), undefined);
});

test("a mutation that fails is rolled back with its audit row, and recorded as failed", async () => {
  const owner = await ownerApi(panel);
  const err = await owner
    .client(ServerService)
    .addServer({ name: "audited-1" })
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((err as ConnectError).code, Code.AlreadyExists);
  const rows = await panel.db("audit_log").where({ action: "ServerService.AddServer" }).orderBy("id");
  assert.equal(
    rows.map((r) => r.outcome),
    ["ok", "permission_denied", "already_exists"],
  );
  assert.is((await panel.db("servers").where({ name: "audited-1" })).length, 1);
});

test("sign-ins, sign-outs and password changes of operators are audited as them", async () => {
  const nina = await operatorSession(panel, "nina@example.com", Role.VIEWER);
  await nina.client(AuthService).logout({});
  const bad = sessionApi(panel).client(AuthService);
  await bad.login({ email: "nina@example.com", password: "wrong password" }).catch(() => {});
  const rows = await panel.db("audit_log").where("target", "like", "%nina@example.com%").orWhere({ actor_name: "nina@example.com" }).orderBy("id");
  assert.equal(
    rows.map((r) => [r.action, r.outcome, r.actor_name]),
    [
      ["AuthService.Login", "ok", "nina@example.com"],
      ["AuthService.ChangePassword", "ok", "nina@example.com"],
      ["AuthService.Logout", "ok", "nina@example.com"],
      ["AuthService.Login", "unauthenticated", "anonymous"],
    ],
  );
  assert.not.ok(JSON.stringify(rows).includes(nina.password), "no password in the audit log");
});

test("the chain verifies; an edited row, and a deleted row, are reported at the first broken link", async () => {
  assert.equal(await verifyAuditChain(panel.db), { intact: true, rows: Number((await panel.db("audit_log").count("* as n"))[0]!.n) });
  const verified = await cli(["audit", "verify", "--json"]);
  assert.is(verified.code, 0, verified.stderr);
  assert.ok(verified.json!.intact);

  const [victim] = await panel.db("audit_log").where({ action: "ServerService.AddServer", outcome: "ok" });
  await panel.db("audit_log").where({ id: victim.id }).update({ actor_name: "someone else" });
  const edited = await verifyAuditChain(panel.db);
  assert.is(edited.intact, false);
  assert.is((edited as { brokenAt: string }).brokenAt, String(victim.id));
  assert.match((edited as { reason: string }).reason, /content does not match its hash/);
  const reported = await cli(["audit", "verify"]);
  assert.is(reported.code, 1);
  assert.match(reported.stdout, new RegExp(`row ${victim.id}: its content does not match its hash`));
  await panel.db("audit_log").where({ id: victim.id }).update({ actor_name: victim.actor_name });
  assert.ok((await verifyAuditChain(panel.db)).intact, "restored");

  const next = await panel.db("audit_log").where("id", ">", victim.id).orderBy("id").first();
  await panel.db("audit_log").where({ id: victim.id }).delete();
  const deleted = await verifyAuditChain(panel.db);
  assert.is((deleted as { brokenAt: string }).brokenAt, String(next.id));
  assert.match((deleted as { reason: string }).reason, /prev_hash does not match/);
});

test("a time outside the years 1–9999 is InvalidArgument naming the field, not a database error", async () => {
  const owner = await ownerApi(panel);
  for (const [filter, field] of [
    [{ until: { seconds: 9223372036854775807n, nanos: 0 } }, "filter.until"],
    [{ since: { seconds: -62135596801n, nanos: 0 } }, "filter.since"],
    [{ since: { seconds: 0n, nanos: -1 } }, "filter.since"],
  ] as const) {
    const err = await owner
      .client(AuditService)
      .listAuditEvents({ filter })
      .catch((e: unknown) => ConnectError.from(e));
    assert.instance(err, ConnectError, `${field} was refused`);
    assert.is((err as ConnectError).code, Code.InvalidArgument, (err as ConnectError).message);
    assert.match((err as ConnectError).rawMessage, new RegExp(`^${field.replace(".", "\\.")}: must`));
  }
});

test("ListAuditEvents filters by actor, action prefix, target and failures, and pages by cursor; export is CSV", async () => {
  const owner = await ownerApi(panel);
  const audit = owner.client(AuditService);
  const failures = await audit.listAuditEvents({ filter: { failuresOnly: true } });
  assert.ok(failures.events.length >= 2 && failures.events.every((e) => e.outcome !== "ok"));
  const byService = await audit.listAuditEvents({ filter: { action: "AuthService." } });
  assert.ok(byService.events.length >= 4 && byService.events.every((e) => e.action.startsWith("AuthService.")));
  const byActor = await audit.listAuditEvents({ filter: { actor: "audit-viewer" } });
  assert.equal(
    byActor.events.map((e) => e.action),
    ["ServerService.AddServer"],
  );
  const seen: bigint[] = [];
  let pageToken = "";
  do {
    const page = await audit.listAuditEvents({ pageSize: 2, pageToken });
    seen.push(...page.events.map((e) => e.id));
    pageToken = page.nextPageToken;
  } while (pageToken);
  const all = (await panel.db("audit_log").orderBy("id", "desc").select("id")).map((r) => BigInt(r.id));
  assert.equal(seen, all, "every row once, newest first");

  let csv = "";
  for await (const part of audit.exportAuditEvents({ filter: { action: "AuthService.Login" } })) csv += Buffer.from(part.chunk).toString("utf8");
  const lines = csv.trim().split("\n");
  assert.is(lines[0], "id,at,actor_kind,actor_id,actor_name,action,target,outcome,detail,ip,request_id,hash");
  assert.ok(lines.length >= 3 && lines.slice(1).every((l) => l.includes("AuthService.Login")));
  const exported = await cli(["audit", "export", "--action", "AuthService.Login"]);
  assert.is(exported.code, 0, exported.stderr);
  assert.is(exported.stdout, csv);
});

test.run();
