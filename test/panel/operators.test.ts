import { Code, ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { Role } from "../../gen/myosicam/panel/v1/common_pb.js";
import { OperatorService } from "../../gen/myosicam/panel/v1/operator_pb.js";
import { operatorSession, ownerApi } from "../helpers/operator-api.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("operators: roles, scopes, one-time passwords and the last owner");

let panel: PanelHost;
test.before(async () => {
  panel = await startPanelHost("operators");
});
test.after(() => panel.stop());

const refusal = async (fn: () => Promise<unknown>) => {
  try {
    await fn();
    return "ok";
  } catch (err) {
    const e = ConnectError.from(err);
    return `${Code[e.code]}: ${e.rawMessage}`;
  }
};

test("the first start made exactly one owner, who must choose a password at the first sign-in", async () => {
  const { operators } = await (await ownerApi(panel)).client(OperatorService).listOperators({});
  assert.equal(
    operators.map((o) => [o.email, o.role, o.mustChangePassword, o.createdBy]),
    [["owner@localhost", Role.OWNER, true, "first start"]],
  );
});

test("an operator is created with a one-time password of 20 characters, stored only as an Argon2id hash", async () => {
  const created = await (await ownerApi(panel))
    .client(OperatorService)
    .createOperator({ email: "Quinn@Example.com", role: Role.OPERATOR, scope: { tags: ["eu"] } });
  assert.is(created.operator!.email, "quinn@example.com");
  assert.is(created.oneTimePassword.length, 20);
  const row = await panel.db("operators").where({ email: "quinn@example.com" }).first();
  assert.match(row.password_hash, /^\$argon2id\$/);
  assert.equal(row.scope_tags, ["eu"]);
  assert.match(
    await refusal(() => ownerApi(panel).then((o) => o.client(OperatorService).createOperator({ email: "quinn@example.com", role: Role.VIEWER }))),
    /^AlreadyExists/,
  );
});

test("an admin manages operators up to admin; owners are an owner's to change", async () => {
  const admin = await operatorSession(panel, "rita@example.com", Role.ADMIN);
  const ops = admin.client(OperatorService);
  assert.match(
    await refusal(() => ops.createOperator({ email: "new-owner@example.com", role: Role.OWNER })),
    /^PermissionDenied: you cannot grant the owner role/,
  );
  const viewer = await ops.createOperator({ email: "sam@example.com", role: Role.VIEWER });
  assert.is((await ops.updateOperator({ operatorId: viewer.operator!.id, role: Role.ADMIN })).operator!.role, Role.ADMIN);
  const ownerId = (await ops.listOperators({})).operators.find((o) => o.role === Role.OWNER)!.id;
  assert.match(await refusal(() => ops.setOperatorDisabled({ operatorId: ownerId, disabled: true })), /^PermissionDenied: only an owner/);
  assert.match(await refusal(() => ops.deleteOperator({ operatorId: admin.id })), /^FailedPrecondition: you cannot delete yourself/);
});

test("the last owner cannot be demoted, disabled or deleted; with a second owner it can", async () => {
  const owner = (await ownerApi(panel)).client(OperatorService);
  const first = (await owner.listOperators({})).operators.find((o) => o.email === "owner@localhost")!;
  for (const change of [
    () => owner.updateOperator({ operatorId: first.id, role: Role.ADMIN }),
    () => owner.setOperatorDisabled({ operatorId: first.id, disabled: true }),
    () => owner.deleteOperator({ operatorId: first.id }),
  ]) {
    assert.match(await refusal(change), /^FailedPrecondition: owner@localhost is the last owner/);
  }
  const second = await owner.createOperator({ email: "tess@example.com", role: Role.OWNER });
  assert.is(await refusal(() => owner.updateOperator({ operatorId: first.id, role: Role.ADMIN })), "ok");
  assert.match(await refusal(() => owner.deleteOperator({ operatorId: second.operator!.id })), /^FailedPrecondition: tess@example.com is the last owner/);
});

test("resetting a password gives a new one-time password and ends the operator's sessions", async () => {
  const uma = await operatorSession(panel, "uma@example.com", Role.VIEWER);
  const reset = await (await ownerApi(panel)).client(OperatorService).resetOperatorPassword({ operatorId: uma.id });
  assert.is(reset.oneTimePassword.length, 20);
  assert.ok(reset.operator!.mustChangePassword);
  assert.is(await panel.db("operator_sessions").where({ operator_id: uma.id }).first(), undefined);
});

test("a deleted operator's audit rows stay", async () => {
  const victor = await operatorSession(panel, "victor@example.com", Role.VIEWER);
  await (await ownerApi(panel)).client(OperatorService).deleteOperator({ operatorId: victor.id });
  const rows = await panel.db("audit_log").where({ actor_id: victor.id });
  assert.ok(rows.length >= 2);
});

test.run();
