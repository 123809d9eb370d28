import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentHealth } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { getHttp2 } from "../helpers/https.js";
import { type PanelHost, startPanelHostBehindDatabaseRelay } from "../helpers/panel-host.js";
import type { TcpRelay } from "../helpers/tcp-relay.js";

const test = suite("a panel whose database is down answers Unavailable, and recovers");

let panel: PanelHost;
let relay: TcpRelay;
const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e: unknown) => Code[ConnectError.from(e).code],
  );
const heartbeat = { uptimeSeconds: 5n, health: AgentHealth.OK, agentVersion: "0.1.0" };

test.before(async () => {
  ({ panel, relay } = await startPanelHostBehindDatabaseRelay("agents_database_down"));
  await panel.setLicense(10, 10);
});
test.after(async () => {
  await panel.stop();
  await relay.stop();
});

test("Heartbeat, Register and the agent download answer Unavailable while PostgreSQL is down; all work once it is back", async () => {
  const { token } = await createInstallToken(panel.db, { server: "db-down", createdBy: "test" });
  const registration = {
    installToken: token,
    agentId: randomUUID(),
    hostname: "h",
    ip: "192.0.2.1",
    os: "linux",
    osVersion: "x",
    arch: "x64",
    agentVersion: "0.1.0",
  };
  const reg = await panel.registration().register(registration);
  const agent = panel.agent(reg.serverId, reg.agentToken);
  assert.is(await codeOf(agent.heartbeat(heartbeat)), "ok");

  await relay.down();
  const { token: second } = await createInstallToken(panel.db, { server: "db-down-2", createdBy: "test" });
  assert.is(await codeOf(agent.heartbeat(heartbeat)), "Unavailable");
  assert.is(await codeOf(panel.registration().register({ ...registration, installToken: second, agentId: randomUUID() })), "Unavailable");
  const download = await getHttp2(`${panel.url}/install/agent/linux-x64`, panel.ca, { authorization: `Bearer ${second}` });
  assert.is(download.status, 503);
  assert.is(JSON.parse(download.body).code, "unavailable");

  await relay.up();
  assert.is(await codeOf(agent.heartbeat(heartbeat)), "ok");
  assert.is(await codeOf(panel.registration().register({ ...registration, installToken: second, agentId: randomUUID() })), "ok");
});

test.run();
