import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { SyncRequestSchema } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { AccountService } from "../../gen/myosicam/panel/v1/account_pb.js";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { createCommands } from "../../services/agents/commands.js";
import { storeSync } from "../../services/agents/sync.js";
import { insertAlerts, markUnreachable, writeHeartbeats } from "../../services/agents/store.js";
import { unblocked } from "../helpers/unblocked.js";
import { ownerApi } from "../helpers/operator-api.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

// PostgreSQL takes at most 65,535 parameters in one statement: a write that names every server of
// a large fleet must be split. (A fan-out to 10,000 agents was refused "the database is
// unavailable" by the scale benchmark: 80,000 parameters, SQLSTATE 08P01.)
const test = suite("writes that touch every server of a large fleet at once");

let panel: PanelHost;
/** Servers enrolled straight in the database (the quota is not what is tested here). */
const addServers = async (count: number, prefix: string): Promise<string[]> => {
  const { rows } = await panel.db.raw(
    `insert into servers (id, name, status, created_by)
     select gen_random_uuid(), ? || n, 'online', 'test' from generate_series(1, ?) as n returning id`,
    [prefix, count],
  );
  return (rows as Array<{ id: string }>).map((r) => r.id);
};

test.before(async () => {
  panel = await startPanelHost("fleet_wide_writes");
});
test.after(async () => {
  await panel.stop();
});

test("a command to 10,000 servers at once is stored for every one and says which server each is for", async () => {
  const serverIds = await addServers(10_000, "fan-");
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));
  const created = await createCommands(panel.db, crypto, { serverIds, kind: "resync", createdBy: "test" });
  assert.is(created.length, 10_000);
  assert.equal(
    created.map((c) => c.serverId),
    serverIds,
  );
  const [row] = await panel.db("commands").whereIn("server_id", serverIds).where({ status: "pending" }).count({ n: "*" });
  assert.is(Number(row!.n), 10_000);
  assert.not.ok(panel.logs.text().includes("the database cannot be reached"));
});

test("alerts for 25,000 servers gone quiet at once are all stored, in order", async () => {
  const serverIds = await addServers(25_000, "quiet-");
  const ids = await insertAlerts(
    panel.db,
    serverIds.map((serverId, i) => ({ serverId, kind: "server_unreachable", message: `server quiet-${i + 1} stopped sending heartbeats` })),
  );
  assert.is(ids.length, 25_000);
  assert.is(new Set(ids).size, 25_000);
  const stored = await panel.db("alerts").whereIn("id", [ids[0]!, ids[24_999]!]).orderBy("id").select("server_id");
  assert.equal(
    stored.map((r: { server_id: string }) => r.server_id),
    [serverIds[0], serverIds[24_999]],
  );
});

test("heartbeats and the liveness scan do not wait for commands being stored for their servers (a fan-out and heartbeats deadlocked)", async () => {
  const [serverId] = await addServers(1, "beating-");
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));
  // A fan-out's transaction holds its commands, and with them the share lock each command's
  // foreign key takes on its server's row, while heartbeats arrive.
  let release!: () => void;
  let stored!: () => void;
  const commandStored = new Promise<void>((resolve) => (stored = resolve));
  const fanOut = panel.db.transaction(async (trx) => {
    await createCommands(trx, crypto, { serverIds: [serverId!], kind: "resync", createdBy: "test" });
    stored();
    await new Promise<void>((resolve) => (release = resolve));
  });
  try {
    await commandStored;
    const at = new Date();
    await unblocked(
      writeHeartbeats(panel.db, [{ serverId: serverId!, at, uptimeSeconds: 5, health: "ok", agentVersion: "0.2.0", load: [0, 0, 0], instances: [] }]),
      "the fan-out's transaction (heartbeat)",
    );
    const row = await panel.db("servers").where({ id: serverId }).first("last_seen_at");
    assert.is(row.last_seen_at.getTime(), at.getTime(), "the heartbeat is written");
    // Silent for 0 s: the scan must judge this server, not skip it as a row being written.
    const marked = await unblocked(markUnreachable(panel.db, 0), "the fan-out's transaction (liveness scan)");
    assert.ok(
      marked.some((s) => s.id === serverId),
      "the scan marks it",
    );
  } finally {
    release();
    await fanOut;
  }
  const [row] = await panel.db("commands").where({ server_id: serverId, status: "pending" }).count({ n: "*" });
  assert.is(Number(row!.n), 1, "the command is stored too");
});

test("a snapshot is stored while a change set's items for its instance are being stored (the upsert does not rewrite the row's key)", async () => {
  const [serverId] = await addServers(1, "syncing-");
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));
  const sync = (hash: string) =>
    storeSync(
      panel.db,
      crypto,
      serverId!,
      create(SyncRequestSchema, {
        present: [{ name: "main", contentHash: hash }],
        snapshots: [{ ref: { name: "main", contentHash: hash }, configDir: "/etc/oscam", version: "2.26.05-11960" }],
      }),
    );
  await sync("a".repeat(64));
  const instance = await panel.db("instances").where({ server_id: serverId }).first("id");
  let release!: () => void;
  let stored!: () => void;
  const itemStored = new Promise<void>((resolve) => (stored = resolve));
  const changeSet = panel.db.transaction(async (trx) => {
    const id = randomUUID();
    await trx("change_sets").insert({ id, summary: "one account", spec: {}, created_by: "test" });
    await trx("change_set_items").insert({ change_set_id: id, instance_id: instance.id, username: "u1", operation: "update", planned: JSON.stringify([]) });
    stored();
    await new Promise<void>((resolve) => (release = resolve));
  });
  try {
    await itemStored;
    await unblocked(sync("b".repeat(64)), "the change set's transaction (sync)");
    assert.is((await panel.db("instances").where({ id: instance.id }).first("content_hash")).content_hash, "b".repeat(64));
  } finally {
    release();
    await changeSet;
  }
});

test("a change set over 70,000 instances (17,500 servers with 4 each) can be read, listed and watched", async () => {
  const { rows } = await panel.db.raw(
    `with s as (
       insert into servers (id, name, status, created_by)
       select gen_random_uuid(), 'wide-' || n, 'online', 'test' from generate_series(1, 17500) as n returning id)
     insert into instances (id, server_id, name, config_dir, content_hash, synced_at)
     select gen_random_uuid(), s.id, 'oscam-' || k, '/etc/oscam-' || k, '', now() from s, generate_series(1, 4) as k returning id`,
  );
  const changeSetId = randomUUID();
  await panel.db("change_sets").insert({ id: changeSetId, summary: "every instance", spec: {}, created_by: "test" });
  await panel.db.raw(
    `insert into change_set_items (change_set_id, instance_id, username, operation, planned)
     select ?, id, 'everyone', 'update', '[]' from unnest(?::uuid[]) as id`,
    [changeSetId, (rows as Array<{ id: string }>).map((r) => r.id)] as never,
  );
  const accounts = (await ownerApi(panel)).client(AccountService);
  const { changeSet } = await accounts.getChangeSet({ changeSetId });
  // No command carries these items, so each counts as failed: what matters is that all are counted.
  assert.is(changeSet!.counts!.failed, 70_000);
  const { items } = await accounts.listChangeSetItems({ changeSetId, pageSize: 10 });
  assert.is(items.length, 10);
  // Connect's client does not end a stream left with `break`: it stays open until the call is
  // aborted, and its deadline timer (which the abort does not clear) would keep this process alive.
  const watching = new AbortController();
  try {
    for await (const update of accounts.watchChangeSet({ changeSetId }, { signal: watching.signal, timeoutMs: 0 })) {
      assert.is(update.changeSet!.counts!.failed, 70_000);
      break;
    }
  } finally {
    watching.abort();
  }
});

test.run();
