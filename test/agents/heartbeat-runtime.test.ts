import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentHealth } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { eventually } from "../helpers/eventually.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("heartbeats keep each instance's runtime current between syncs");

let panel: PanelHost;
test.before(async () => {
  panel = await startPanelHost("agents_heartbeat_runtime");
  await panel.setLicense(10, 10);
});
test.after(async () => {
  if (process.env.DEBUG_LOGS)
    console.log(
      panel.logs
        .text()
        .split("\n")
        .filter((l) => /"level":50/.test(l))
        .join("\n")
        .slice(0, 3000),
    );
  await panel.stop();
});

test("a stopped OScam, or one restarted with a new pid, shows at the next heartbeat", () => scenario().catch((e: unknown) => assert.unreachable(String(e))));

async function scenario() {
  const { id: serverId, client: agent } = await panel.enroll("runtime-1");
  await agent.sync({
    present: [{ name: "main", contentHash: "a".repeat(64) }],
    snapshots: [{ ref: { name: "main", contentHash: "a".repeat(64) }, configDir: "/etc/oscam", runtime: { running: true, pid: 100, uptimeSeconds: 50n } }],
  });
  const instance = () => panel.db("instances").where({ server_id: serverId, name: "main" }).first();
  assert.is((await instance()).pid, 100);
  const resources = { cpuPercent: 0, rssMb: 0, diskMb: 0 };
  const beat = (runtime: { running: boolean; pid: number; uptimeSeconds: bigint }) =>
    agent.heartbeat({ uptimeSeconds: 60n, health: AgentHealth.OK, agentVersion: "0.1.0", instances: [{ name: "main", resources, runtime }] });

  await beat({ running: true, pid: 4242, uptimeSeconds: 3n });
  const restarted = await eventually(instance, (i) => i.pid === 4242, "the new pid");
  assert.is(restarted.running, true);
  assert.is(Number(restarted.uptime_seconds), 3);

  await beat({ running: false, pid: 0, uptimeSeconds: 0n });
  const stopped = await eventually(instance, (i) => i.running === false, "the instance to show stopped");
  assert.is(stopped.pid, null);
  assert.is(stopped.uptime_seconds, null);
}

test.run();
