import { createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { CommandOutcome } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { createCommands } from "../../services/agents/commands.js";
import { eventually } from "../helpers/eventually.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("a command for many agents goes out as fast as results come back (AGENT_COMMANDS_IN_FLIGHT)");

let panel: PanelHost;
const streams = new AbortController();
test.before(async () => {
  panel = await startPanelHost("delivery_pacing", { AGENT_COMMANDS_IN_FLIGHT: "2" });
  await panel.setLicense(10);
});
test.after(async () => {
  streams.abort();
  await panel.stop();
});

test("with room for 2, a command to 5 agents reaches 2 of them; each result lets the next agent have its own, until all 5 answered", async () => {
  const agents = await Promise.all(["pace-1", "pace-2", "pace-3", "pace-4", "pace-5"].map((name) => panel.enroll(name)));
  const received: Array<{ agent: (typeof agents)[number]; commandId: string }> = [];
  let open = 0;
  for (const agent of agents) {
    void (async () => {
      for await (const res of agent.client.subscribe({ agentVersion: "0.2.0" }, { signal: streams.signal, timeoutMs: 0 })) {
        if (res.message.case === "keepalive") open++;
        if (res.message.case === "command") received.push({ agent, commandId: res.message.value.id });
      }
    })().catch(() => {});
  }
  await eventually(
    async () => open,
    (n) => n >= 5,
    "every stream open",
  );
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));
  const created = await createCommands(panel.db, crypto, { serverIds: agents.map((a) => a.id), kind: "resync", createdBy: "test" });
  const commands = () =>
    panel.db("commands").whereIn(
      "id",
      created.map((c) => c.id),
    );
  const delivered = async () => Number((await commands().where({ status: "delivered" }).count({ n: "*" }))[0]!.n);
  await eventually(
    async () => received.length,
    (n) => n >= 2,
    "two commands delivered",
  );
  // Streams woken together are served by one claim: without the window all 5 would be out by now.
  assert.is(await delivered(), 2, "two delivered, three waiting for room");
  assert.is(received.length, 2);
  // Answer each command as it comes: each answer makes room for one more.
  let answered = 0;
  while (answered < 5) {
    await eventually(
      async () => received.length,
      (n) => n > answered,
      `command ${answered + 1} delivered`,
    );
    const { agent, commandId } = received[answered]!;
    await agent.client.reportResult({ commandId, outcome: CommandOutcome.SUCCEEDED, detail: "done" });
    answered++;
    assert.ok(received.length <= answered + 2, `never more than 2 unanswered (${received.length} delivered, ${answered} answered)`);
  }
  const statuses = await commands().pluck("status");
  assert.equal(statuses, ["succeeded", "succeeded", "succeeded", "succeeded", "succeeded"]);
});

test.run();
