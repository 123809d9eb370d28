import { Code, ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentHealth } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { maxConcurrentSyncs, maxQueuedSyncs } from "../../services/agents/service.js";
import { eventually } from "../helpers/eventually.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("a backlog of syncs is refused alone, with a retry hint");

let panel: PanelHost;

test.before(async () => {
  panel = await startPanelHost("agents_sync_backlog");
  await panel.setLicense(10);
});
test.after(async () => {
  await panel.stop();
});

test("past the syncs that may wait, a sync is refused at once with a retry hint; heartbeats still pass and the waiting syncs are stored", async () => {
  const syncing = await panel.enroll("kappa");
  const beating = await panel.enroll("lambda");
  const sent = maxConcurrentSyncs + maxQueuedSyncs + 20;
  const outcomes: Array<"ok" | ConnectError> = [];
  const ref = { name: "main", contentHash: "a".repeat(64) };
  const snapshot = { present: [ref], snapshots: [{ ref, configDir: "/etc/oscam" }] };
  await syncing.client.sync(snapshot);
  // The syncs being stored wait on the instance's row (a long first snapshot, as it were).
  const holder = await panel.db.transaction();
  let all: Promise<unknown> | undefined;
  try {
    await holder("instances").where({ server_id: syncing.id, name: "main" }).forUpdate().select("id");
    all = Promise.all(
      Array.from({ length: sent }, () =>
        syncing.client.sync(snapshot).then(
          () => outcomes.push("ok"),
          (err: unknown) => outcomes.push(ConnectError.from(err)),
        ),
      ),
    );
    const refused = await eventually(
      async () => outcomes.filter((o) => o !== "ok"),
      (r) => r.length >= sent - maxConcurrentSyncs - maxQueuedSyncs,
      "the syncs past the queue refused",
    );
    assert.ok(
      refused.every((e) => e.code === Code.Unavailable && e.metadata.get("retry-after") === "5"),
      refused.map((e) => e.message).join(" | "),
    );
    assert.match(refused[0]!.rawMessage, /agents' syncs are being stored or waiting; try again in 5 s/);
    const logged = panel.logs.lines().filter((l) => l.rpc === "Sync" && l.code === "Unavailable");
    assert.ok(logged.length >= refused.length, "each refusal is logged");
    assert.ok(
      logged.every((l) => l.level === 30 && l.msg === "rpc turned away for now: busy" && !l.err),
      "as information without a stack trace, not as a failure",
    );
    assert.is(outcomes.filter((o) => o === "ok").length, 0, "none stored while the table is locked");
    await beating.client.heartbeat({ uptimeSeconds: 5n, health: AgentHealth.OK, agentVersion: "0.1.0" });
  } finally {
    await holder.commit();
  }
  await all;
  assert.is(outcomes.filter((o) => o === "ok").length, maxConcurrentSyncs + maxQueuedSyncs, "every sync that waited is stored");
  assert.is(outcomes.length, sent);
});

test.run();
