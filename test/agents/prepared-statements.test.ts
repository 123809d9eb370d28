import { randomUUID } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { claimCommandsFor, createCommands } from "../../services/agents/commands.js";
import { selectServersTrust, writeHeartbeats, type HeartbeatWrite } from "../../services/agents/store.js";
import { createDatabase, type Knex } from "../../services/lib/db.js";
import { recordNonces } from "../../services/lib/hmac/nonce-store.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("the statements every agent call makes are prepared and planned once per connection, whatever the size of their batch");

let panel: PanelHost;
/**
 * A generic-plan pool (as the agents service's) of one connection: every statement below runs on
 * it, so its prepared statements and how often each was planned can be listed.
 */
let one: Knex;
const servers: string[] = [];
test.before(async () => {
  panel = await startPanelHost("prepared_statements");
  one = createDatabase(panel.config.databaseUrl!, panel.logs.log, 1, { genericPlans: true });
  for (let i = 0; i < 40; i++) {
    const id = randomUUID();
    await panel.db("servers").insert({ id, name: `prepared-${i}`, status: "online", approved: true, created_by: "test" });
    servers.push(id);
  }
});
test.after(async () => {
  await one.destroy();
  await panel.stop();
});

/** The statements prepared on that connection so far, each with how often it was planned for its parameters. */
const preparedNames = async () => {
  const { rows } = await one.raw("select name, custom_plans from pg_prepared_statements");
  for (const r of rows as Array<{ name: string; custom_plans: string }>) assert.is(Number(r.custom_plans), 0, `${r.name} is planned once, not for each call`);
  return (rows as Array<{ name: string }>).map((r) => r.name);
};

const beat = (serverId: string, n: number): HeartbeatWrite => ({
  serverId,
  at: new Date(Date.now() + n),
  uptimeSeconds: 1000 + n,
  health: "ok",
  agentVersion: "0.3.0",
  load: n % 2 === 0 ? [0.25, 1.5, 12] : [],
  instances: [],
});

test("heartbeat batches of 1, 7 and 40 servers run one prepared statement and store what each heartbeat said", async () => {
  for (const size of [1, 7, 40]) await writeHeartbeats(one, servers.slice(0, size).map(beat));
  const rows = await panel.db("servers").whereIn("id", servers.slice(0, 2)).orderBy("name").select("uptime_seconds", "load_average");
  assert.equal(
    rows.map((r) => [Number(r.uptime_seconds), r.load_average]),
    [
      [1000, [0.25, 1.5, 12]],
      [1001, []],
    ],
  );
  assert.ok((await preparedNames()).includes("myosicam_heartbeats"));
});

test("the trust rows of 1 and of 12 servers, an unknown one among them, come from one prepared statement", async () => {
  const unknown = randomUUID();
  assert.equal(
    (await selectServersTrust(one, [servers[0]!])).map((r) => r?.id),
    [servers[0]],
  );
  const asked = [...servers.slice(0, 11), unknown];
  assert.equal(
    (await selectServersTrust(one, asked)).map((r) => r?.id),
    [...servers.slice(0, 11), undefined],
  );
  assert.ok((await preparedNames()).includes("myosicam_servers_trust"));
});

test("nonces and claims of batches of different sizes run prepared too", async () => {
  assert.equal(await recordNonces(one, [{ callerId: servers[0]!, nonce: "n-1" }]), [true]);
  assert.equal(
    await recordNonces(one, [
      { callerId: servers[0]!, nonce: "n-1" },
      { callerId: servers[0]!, nonce: "n-2" },
      { callerId: servers[1]!, nonce: "n-1" },
    ]),
    [false, true, true],
  );
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));
  await createCommands(panel.db, crypto, { serverIds: servers.slice(0, 3), kind: "resync", createdBy: "test" });
  const first = await claimCommandsFor(one, crypto, [{ serverId: servers[0]!, sentOnThisStream: new Set() }]);
  assert.is(first[0]!.length, 1);
  const next = await claimCommandsFor(
    one,
    crypto,
    servers.slice(1, 3).map((serverId) => ({ serverId, sentOnThisStream: new Set<string>() })),
  );
  assert.equal(
    next.map((c) => c.length),
    [1, 1],
  );
  const names = await preparedNames();
  assert.ok(names.includes("myosicam_nonces") && names.includes("myosicam_claim_commands"), names.join(", "));
});

test.run();
