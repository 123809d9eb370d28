import { create, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { EnrollmentService } from "../../gen/myosicam/agent/v1/enrollment_pb.js";
import { InstallerService } from "../../gen/myosicam/install/v1/install_pb.js";
import { AlertService } from "../../gen/myosicam/panel/v1/alert_pb.js";
import { CommandService } from "../../gen/myosicam/panel/v1/command_pb.js";
import { Role } from "../../gen/myosicam/panel/v1/common_pb.js";
import { ServerService } from "../../gen/myosicam/panel/v1/server_pb.js";
import { serviceRegistry } from "../../services/index.js";
import { panelPolicies, operatorServices } from "../../services/panel/authorization.js";
import type { RoleName } from "../../services/lib/principal.js";
import { apiClientWith, ownerApi, type OperatorApi } from "../helpers/operator-api.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("authorization: one table for every RPC of the panel listener, a role × RPC matrix, and server scopes");

let panel: PanelHost;
test.before(async () => {
  panel = await startPanelHost("authz");
});
test.after(() => panel.stop());

const procedures = (services: readonly DescService[]) => services.flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name}`));

test("every RPC served on the panel listener has an entry in the table, and every entry names a served RPC", () => {
  const served = procedures(serviceRegistry.filter((s) => s.listener === "panel").flatMap((s) => s.descriptors));
  const missing = served.filter((p) => !(p in panelPolicies));
  assert.equal(missing, [], `no access rule for ${missing.join(", ")}`);
  const stale = Object.keys(panelPolicies).filter((p) => !served.includes(p));
  assert.equal(stale, [], `rules for RPCs nobody serves: ${stale.join(", ")}`);
  // And the operator services are exactly the myosicam.panel.v1 services served.
  const panelV1 = serviceRegistry.flatMap((s) => s.descriptors).filter((d) => d.typeName.startsWith("myosicam.panel.v1."));
  assert.equal(panelV1.map((d) => d.typeName).sort(), operatorServices.map((d) => d.typeName).sort());
});

/** Calls a method with an empty request; answers the error code, or undefined when it passed authorization. */
async function codeOf(api: OperatorApi, service: DescService, method: DescMethod): Promise<Code | undefined> {
  const client = api.client(service) as unknown as Record<string, (req: unknown, opts?: unknown) => unknown>;
  const call = client[method.localName]!;
  try {
    if (method.methodKind === "server_streaming") {
      for await (const _ of call(create(method.input), { timeoutMs: 5000 }) as AsyncIterable<unknown>) break;
    } else await call(create(method.input));
    return undefined;
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

const roles: Array<[RoleName, Role]> = [
  ["viewer", Role.VIEWER],
  ["operator", Role.OPERATOR],
  ["admin", Role.ADMIN],
  ["owner", Role.OWNER],
];
const rank = (r: string) => ["viewer", "operator", "admin", "owner"].indexOf(r);

test("each role reaches exactly the RPCs its rank allows: below the rule is PermissionDenied, at or above it never", async () => {
  const failures: string[] = [];
  for (const [name, role] of roles) {
    const api = await apiClientWith(panel, `matrix-${name}`, role);
    for (const service of operatorServices) {
      for (const method of service.methods) {
        const procedure = `/${service.typeName}/${method.name}`;
        const policy = panelPolicies[procedure]!;
        // Login with an empty body is refused by validation; sign-out would end nothing (no session).
        if (policy.access === "public") continue;
        const code = await codeOf(api, service, method);
        const allowed = policy.access === "signed_in" || rank(name) >= rank(policy.access);
        if (allowed && (code === Code.PermissionDenied || code === Code.Unauthenticated)) failures.push(`${name} refused ${procedure}: ${Code[code]}`);
        if (!allowed && code !== Code.PermissionDenied) failures.push(`${name} was not refused ${procedure} (got ${code === undefined ? "ok" : Code[code]})`);
      }
    }
  }
  assert.equal(failures, []);
});

test("a scoped caller is refused every fleet-wide RPC, and reaches the server RPCs", async () => {
  const scoped = await apiClientWith(panel, "matrix-scoped-owner", Role.OWNER, { tags: ["eu"] });
  const failures: string[] = [];
  for (const service of operatorServices) {
    for (const method of service.methods) {
      const procedure = `/${service.typeName}/${method.name}`;
      const policy = panelPolicies[procedure]!;
      if (policy.access === "public") continue;
      const code = await codeOf(scoped, service, method);
      if (policy.scope === "fleet" && code !== Code.PermissionDenied) failures.push(`scoped caller reached ${procedure}`);
      if (policy.scope !== "fleet" && code === Code.PermissionDenied) failures.push(`scoped caller refused ${procedure}`);
    }
  }
  assert.equal(failures, []);
});

test("a scoped operator sees only its servers: lists are filtered, and an id outside the scope is NotFound, never PermissionDenied", async () => {
  const owner = await ownerApi(panel);
  const servers = owner.client(ServerService);
  const eu = (await servers.addServer({ name: "scope-eu-1", tags: ["eu"] })).server!;
  const us = (await servers.addServer({ name: "scope-us-1", tags: ["us"] })).server!;
  const single = (await servers.addServer({ name: "scope-single" })).server!;
  const scoped = await apiClientWith(panel, "scoped-operator", Role.OPERATOR, { tags: ["eu"], serverIds: [single.id] });
  const mine = scoped.client(ServerService);

  const listed = (await mine.listServers({})).servers.map((s) => s.name).sort();
  assert.equal(listed, ["scope-eu-1", "scope-single"]);
  assert.is((await mine.countServers({})).total, 2);
  assert.is((await mine.getServer({ serverId: eu.id })).server!.name, "scope-eu-1");

  const refused = async (fn: () => Promise<unknown>) => {
    try {
      await fn();
      return "ok";
    } catch (err) {
      return Code[ConnectError.from(err).code];
    }
  };
  assert.is(await refused(() => mine.getServer({ serverId: us.id })), "NotFound");
  assert.is(await refused(() => mine.rerunBootstrap({ serverId: us.id })), "NotFound");
  assert.is(await refused(() => mine.setServerTags({ serverIds: [us.id], add: ["x"] })), "NotFound");
  assert.is(await refused(() => scoped.client(CommandService).sendCommand({ targets: [{ serverId: us.id }], kind: 7 })), "NotFound");
  const approvals = await mine.approveServers({ serverIds: [us.id, eu.id] });
  assert.equal(
    approvals.results.map((r) => [r.serverId, r.ok, r.error]),
    [
      [us.id, false, `no server ${us.id}`],
      [eu.id, true, ""],
    ],
  );
  // The other server's install tokens, alerts and commands stay invisible too.
  const tokens = (await mine.listInstallTokens({})).tokens.map((t) => t.serverName);
  assert.ok(tokens.length > 0 && tokens.every((n) => n === "scope-eu-1" || n === "scope-single"), tokens.join(","));
  const us1 = await owner.client(CommandService).sendCommand({ targets: [{ serverId: us.id }], kind: 7 });
  assert.is(await refused(() => scoped.client(CommandService).getCommand({ commandId: us1.commands[0]!.id })), "NotFound");
  assert.ok((await scoped.client(CommandService).listCommands({})).commands.every((c) => c.serverId !== us.id));
  assert.is((await scoped.client(AlertService).listAlerts({ serverId: us.id })).alerts.length, 0);
  // A new server must land inside the scope.
  assert.is(await refused(() => mine.addServer({ name: "scope-outside" })), "PermissionDenied");
  assert.is((await mine.addServer({ name: "scope-eu-2", tags: ["eu", "new"] })).server!.name, "scope-eu-2");
});

test("services internal to the panel (enrollment, the installer) are refused on the network, even to an owner", async () => {
  const owner = await ownerApi(panel);
  const enrollment = owner.client(EnrollmentService);
  const err = await enrollment.issueInstallToken({ serverName: "sneaky", ttlSeconds: 600, createdBy: "x" }).catch((e: unknown) => ConnectError.from(e));
  assert.is((err as ConnectError).code, Code.PermissionDenied);
  assert.match((err as ConnectError).rawMessage, /internal to the panel/);
  const installer = await owner
    .client(InstallerService)
    .startInstall({})
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((installer as ConnectError).code, Code.PermissionDenied);
  assert.is(await panel.db("servers").where({ name: "sneaky" }).first(), undefined);
});

test.run();
