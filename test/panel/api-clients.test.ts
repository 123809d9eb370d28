import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ApiClientService } from "../../gen/myosicam/panel/v1/api_client_pb.js";
import { AuthService } from "../../gen/myosicam/panel/v1/auth_pb.js";
import { PrincipalKind, Role } from "../../gen/myosicam/panel/v1/common_pb.js";
import { OperatorService } from "../../gen/myosicam/panel/v1/operator_pb.js";
import { ServerService } from "../../gen/myosicam/panel/v1/server_pb.js";
import { codeOf, apiClientWith, operatorSession, ownerApi, signedApi } from "../helpers/operator-api.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("API clients: HMAC-signed calls to the operator API, revocation, rotation with overlap, and whom they act for");

let panel: PanelHost;
test.before(async () => {
  panel = await startPanelHost("api_clients");
});
test.after(() => panel.stop());

test("a client signs its calls with its secret; the secret is shown once and stored sealed", async () => {
  const ci = await apiClientWith(panel, "ci-pipeline", Role.OPERATOR, { tags: ["ci"] });
  assert.match(ci.clientId, /^ac_[0-9a-f]{24}$/);
  assert.match(ci.secret, /^[0-9a-f]{64}$/);
  const me = await ci.client(AuthService).whoAmI({});
  assert.equal([me.kind, me.id, me.name, me.role, me.scope?.tags], [PrincipalKind.API_CLIENT, ci.clientId, "ci-pipeline", Role.OPERATOR, ["ci"]]);
  const row = await panel.db("api_clients").where({ id: ci.clientId }).first();
  assert.match(row.secret, /^enc:v1:/);
  assert.not.ok(JSON.stringify(row).includes(ci.secret));
  const listed = (await (await ownerApi(panel)).client(ApiClientService).listApiClients({})).clients.find((c) => c.id === ci.clientId)!;
  assert.ok(listed.lastUsedAt, "its last use is shown");
  assert.not.ok(JSON.stringify(listed, (_k, v) => (typeof v === "bigint" ? String(v) : v)).includes(ci.secret), "a list never holds a secret");
});

test("a wrong secret, an unknown client and a replayed request are refused as Unauthenticated", async () => {
  const ci = await apiClientWith(panel, "ci-wrong", Role.VIEWER);
  assert.is(await codeOf(() => signedApi(panel, ci.clientId, "0".repeat(64)).client(AuthService).whoAmI({})), "Unauthenticated");
  assert.is(
    await codeOf(() =>
      signedApi(panel, `ac_${"0".repeat(24)}`, ci.secret)
        .client(AuthService)
        .whoAmI({}),
    ),
    "Unauthenticated",
  );
  const refusals = await panel.db("hmac_refusals").whereIn("reason", ["bad_signature", "unknown_caller"]).select("reason");
  assert.ok(refusals.length >= 2, "refusals are recorded in the same table as every signed caller's");
});

test("a revoked client's very next request is refused", async () => {
  const ci = await apiClientWith(panel, "ci-revoked", Role.OPERATOR);
  assert.is(await codeOf(() => ci.client(ServerService).listServers({})), "ok");
  await (await ownerApi(panel)).client(ApiClientService).revokeApiClient({ clientId: ci.clientId });
  assert.is(await codeOf(() => ci.client(ServerService).listServers({})), "Unauthenticated");
});

test("a rotation keeps the old secret valid for the overlap, then only the new one works", async () => {
  const ci = await apiClientWith(panel, "ci-rotated", Role.OPERATOR);
  const owner = await ownerApi(panel);
  const rotated = await owner.client(ApiClientService).rotateApiClientSecret({ clientId: ci.clientId, overlapSeconds: 3600 });
  assert.ok(rotated.client!.previousSecretValidUntil);
  const fresh = signedApi(panel, ci.clientId, rotated.secret);
  assert.is(await codeOf(() => ci.client(AuthService).whoAmI({})), "ok", "the old secret during the overlap");
  assert.is(await codeOf(() => fresh.client(AuthService).whoAmI({})), "ok", "the new secret");
  await panel
    .db("api_clients")
    .where({ id: ci.clientId })
    .update({ previous_valid_until: panel.db.raw("now() - interval '1 second'") });
  assert.is(await codeOf(() => ci.client(AuthService).whoAmI({})), "Unauthenticated", "the old secret after the overlap");
  assert.is(await codeOf(() => fresh.client(AuthService).whoAmI({})), "ok");
  const now = await owner.client(ApiClientService).rotateApiClientSecret({ clientId: ci.clientId, overlapSeconds: 0 });
  assert.is(await codeOf(() => fresh.client(AuthService).whoAmI({})), "Unauthenticated", "overlap 0: the old secret dies at once");
  assert.is(await codeOf(() => signedApi(panel, ci.clientId, now.secret).client(AuthService).whoAmI({})), "ok");
});

test("any operator may hold clients acting for them, never above their role or outside their scope; they see only their own", async () => {
  const olga = await operatorSession(panel, "olga@example.com", Role.OPERATOR, { tags: ["eu"] });
  const clients = olga.client(ApiClientService);
  assert.is(await codeOf(() => clients.createApiClient({ name: "olga-admin", role: Role.ADMIN })), "PermissionDenied");
  assert.is(await codeOf(() => clients.createApiClient({ name: "olga-us", role: Role.VIEWER, scope: { tags: ["us"] } })), "PermissionDenied");
  const mine = await clients.createApiClient({ name: "olga-script", role: Role.OPERATOR });
  assert.equal(mine.client!.scope?.tags, ["eu"], "an empty scope is the creator's own");
  assert.equal(
    (await clients.listApiClients({})).clients.map((c) => c.name),
    ["olga-script"],
  );
  const other = await apiClientWith(panel, "someone-elses", Role.VIEWER);
  assert.is(await codeOf(() => clients.revokeApiClient({ clientId: other.clientId })), "NotFound");
});

test("a client acts for its operator: capped at their new role when demoted, revoked when they are disabled", async () => {
  const paul = await operatorSession(panel, "paul@example.com", Role.ADMIN);
  const script = await paul.client(ApiClientService).createApiClient({ name: "paul-script", role: Role.ADMIN });
  const api = signedApi(panel, script.client!.id, script.secret);
  assert.is(await codeOf(() => api.client(OperatorService).listOperators({})), "ok");
  const owner = (await ownerApi(panel)).client(OperatorService);
  await owner.updateOperator({ operatorId: paul.id, role: Role.VIEWER });
  assert.is((await api.client(AuthService).whoAmI({})).role, Role.VIEWER);
  assert.is(await codeOf(() => api.client(OperatorService).listOperators({})), "PermissionDenied");
  await owner.setOperatorDisabled({ operatorId: paul.id, disabled: true });
  assert.is(await codeOf(() => api.client(AuthService).whoAmI({})), "Unauthenticated");
});

test("no log line holds an API client's secret or a signature", async () => {
  const ci = await apiClientWith(panel, "ci-logs", Role.VIEWER);
  await ci.client(AuthService).whoAmI({});
  await signedApi(panel, ci.clientId, "f".repeat(64))
    .client(AuthService)
    .whoAmI({})
    .catch(() => {});
  const logs = panel.logs.text();
  assert.ok(logs.includes(ci.clientId), "the logs name the client");
  assert.not.ok(logs.includes(ci.secret), "its secret");
  assert.not.ok(/"x-signature"\s*:\s*"[0-9a-f]{64}"/.test(logs), "a signature");
});

test.run();
