import { createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { createCommands } from "../../services/agents/commands.js";
import { insertAlerts } from "../../services/agents/store.js";
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

test.run();
