import { Code, ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentHealth } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { eventually } from "../helpers/eventually.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("a panel refusing calls for load writes the spell down for every replica's liveness scan");

let panel: PanelHost;
const heartbeat = { uptimeSeconds: 5n, health: AgentHealth.OK, agentVersion: "0.1.0" };

test.before(async () => {
  // Ten calls at a time (the least the setting allows): a heartbeat waits for its batch to be
  // written (20 ms and more), and an eleventh call meanwhile is refused.
  panel = await startPanelHost("agents_busy_spells", { RPC_MAX_PENDING_CALLS: "10" });
  await panel.setLicense(10);
});
test.after(async () => {
  await panel?.stop();
});

const spells = () => panel.db("panel_busy_spells").select("started_at", "last_refused_at", "refused", "over");

test("the spell's row appears with its first refusal, and says it is over once 5 s passed without one", async () => {
  const agent = (await panel.enroll("busy-1")).client;
  // Heartbeats sent together until some are refused (the first ten of a volley are taken on).
  let refused = 0;
  for (let volley = 0; refused === 0 && volley < 20; volley++) {
    const answers = await Promise.allSettled(Array.from({ length: 50 }, () => agent.heartbeat(heartbeat)));
    for (const a of answers) {
      if (a.status === "rejected") {
        const e = ConnectError.from(a.reason);
        assert.is(e.code, Code.Unavailable, e.rawMessage);
        assert.match(e.rawMessage, /^the panel is busy/);
        refused++;
      }
    }
  }
  assert.ok(refused > 0, "some heartbeats were refused");
  const [started] = await eventually(spells, (rows) => rows.length === 1, "the spell written down");
  assert.is(started!.over, false);
  assert.ok(started!.refused >= 1);
  assert.ok(started!.started_at.getTime() <= started!.last_refused_at.getTime());
  assert.ok(Date.now() - started!.started_at.getTime() < 60_000, "timed on the wall clock");

  // Calls one at a time are taken on: once 5 s passed since the last refusal, the next one ends the spell.
  const [over] = await eventually(
    async () => {
      await agent.heartbeat(heartbeat);
      return spells();
    },
    (rows) => rows[0]?.over === true,
    "the spell over",
  );
  assert.is(over!.refused, refused, "every refusal counted");
  assert.is((await spells()).length, 1, "one row for the spell");
});

test.run();
