import { Code, ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentHealth } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { maxConcurrentSyncs, maxQueuedSyncs } from "../../services/agents/sync-queue.js";
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

test("past the syncs that may wait, a sync is refused at once with a retry hint, before its signature is checked; heartbeats still pass and the waiting syncs are stored", async () => {
  const syncing = await panel.enroll("kappa");
  const beating = await panel.enroll("lambda");
  const sent = maxConcurrentSyncs + maxQueuedSyncs + 20;
  const outcomes: Array<"ok" | ConnectError> = [];
  const ref = { name: "main", contentHash: "a".repeat(64) };
  const snapshot = { present: [ref], snapshots: [{ ref, configDir: "/etc/oscam" }] };
  await syncing.client.sync(snapshot);
  const nonces = async () => Number((await panel.db("hmac_nonces").where({ caller_id: syncing.id }).count({ n: "*" }))[0]!.n);
  const noncesBefore = await nonces();
  // The syncs being stored wait on the instance's row (a long first snapshot, as it were).
  const holder = await panel.db.transaction();
  let all: Promise<unknown> | undefined;
  let refused: ConnectError[] = [];
  try {
    await holder("instances").where({ server_id: syncing.id, name: "main" }).forUpdate().select("id");
    const send = (count: number) =>
      Array.from({ length: count }, () =>
        syncing.client.sync(snapshot).then(
          () => outcomes.push("ok"),
          (err: unknown) => outcomes.push(ConnectError.from(err)),
        ),
      );
    // The queue fills: each of these is checked (its nonce recorded), and the ones being stored
    // wait for the locked row.
    const queued = send(maxConcurrentSyncs + maxQueuedSyncs);
    await eventually(nonces, (n) => n === noncesBefore + maxConcurrentSyncs + maxQueuedSyncs, "the queued syncs checked");
    await eventually(
      async () => Number((await panel.db.raw("select count(*) as n from pg_stat_activity where wait_event_type = 'Lock'")).rows[0].n),
      (n) => n >= maxConcurrentSyncs,
      "the syncs being stored waiting for the row",
    );
    all = Promise.all([...queued, ...send(sent - maxConcurrentSyncs - maxQueuedSyncs)]);
    refused = await eventually(
      async () => outcomes.filter((o) => o !== "ok"),
      (r) => r.length >= sent - maxConcurrentSyncs - maxQueuedSyncs,
      "the syncs past the queue refused",
    );
    assert.ok(
      refused.every((e) => e.code === Code.Unavailable && e.metadata.get("retry-after") === "5"),
      refused.map((e) => e.message).join(" | "),
    );
    assert.match(refused[0]!.rawMessage, /agents' syncs are being stored or waiting; try again in 5 s/);
    assert.is(refused.length, sent - maxConcurrentSyncs - maxQueuedSyncs);
    assert.is(await nonces(), noncesBefore + maxConcurrentSyncs + maxQueuedSyncs, "a refused sync's signature was never checked: no nonce recorded for it");
    assert.is(outcomes.filter((o) => o === "ok").length, 0, "none stored while the table is locked");
    await beating.client.heartbeat({ uptimeSeconds: 5n, health: AgentHealth.OK, agentVersion: "0.1.0" });
  } finally {
    await holder.commit();
  }
  await all;
  assert.is(outcomes.filter((o) => o === "ok").length, maxConcurrentSyncs + maxQueuedSyncs, "every sync that waited is stored");
  assert.is(outcomes.length, sent);
  // The log says when the refusing starts and ends, with how many, not a line per refusal.
  await syncing.client.sync(snapshot);
  const lines = panel.logs.lines();
  const started = lines.filter((l) => l.msg === "syncs are backlogged: refusing new ones with a retry hint until the waiting ones are stored");
  const ended = lines.filter((l) => l.msg === "accepting syncs again");
  assert.is(started.length, 1);
  assert.equal(
    ended.map((l) => [l.level, l.refused]),
    [[30, refused.length]],
  );
  assert.not.ok(
    lines.some((l) => l.rpc === "Sync" && Number(l.level) >= 50),
    "no refusal logged as a failure",
  );
});

test.run();
