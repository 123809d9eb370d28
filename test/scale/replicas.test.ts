// npm test runs this file alone: two replicas and 2,000 agents take the machine's two cores.
import { createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { describe, startFleet, type Fleet } from "../../bench/fleet/fleet.js";
import { scrapeMetrics } from "../../bench/fleet/panel-process.js";
import { refusalSpells, startFleetStack, type FleetStack } from "../../bench/fleet/stack.js";
import { AccountService } from "../../gen/myosicam/panel/v1/account_pb.js";
import { scanLiveness } from "../../services/agents/alerts.js";
import { eventually } from "../helpers/eventually.js";

const test = suite("two panel replicas on one PostgreSQL behind HAProxy (TCP, TLS passed through), 2,000 emulated agents");

const agents = 2000;
const heartbeatSeconds = 15;
// Two minutes of silence before `unreachable` (the default is three): short enough that a replica
// whose agents stayed away would be caught within the test, long enough for a loaded CI machine.
const missedHeartbeats = 8;

let stack: FleetStack | undefined;
let fleet: Fleet | undefined;
test.after(async () => {
  await fleet?.stop();
  await stack?.stop();
});

/** The agents a replica holds now, from its own /metrics. */
async function connectedAgents(url: string, ca: string): Promise<number> {
  return (await scrapeMetrics(url, ca, ["myosicam_connected_agents"])).myosicam_connected_agents!;
}

test("a replica killed mid fan-out: its agents are back on the other within 60 s, every command runs once, and liveness raises no false alarm", () =>
  failover().catch((err: unknown) => {
    // uvu's reporter cannot print a ConnectError (its `details`): say it in a plain Error, with an
    // assertion's values.
    const e = err as Error & { expects?: unknown; actual?: unknown };
    const values = "expects" in e ? ` (expected ${JSON.stringify(e.expects)}, got ${JSON.stringify(e.actual)})` : "";
    throw new Error(`${e.message}${values}${fleet ? `\n  fleet: ${describe(fleet.totals())}` : ""}`);
  }));

async function failover() {
  stack = await startFleetStack({
    replicas: 2,
    heartbeatSeconds,
    haproxy: "/usr/sbin/haproxy",
    env: { AGENT_MISSED_HEARTBEATS: String(missedHeartbeats) },
  });
  const s = stack;
  fleet = await startFleet({
    url: s.url,
    ca: s.ca,
    agents: await s.seeds(agents),
    rampPerSecond: 400,
    // Small files: this is about connections and commands, not about storing snapshots.
    behaviour: { heartbeatSeconds, syncSeconds: 3600, instances: [1, 1], accounts: [3, 3] },
    deadlineMs: 10 * 60_000,
  });
  const f = fleet;
  await f.until("every agent registered, synced and subscribed", (t) => t.registered === agents && t.synced === agents && t.streamsOpen === agents, 300_000);

  // HAProxy spread them: both replicas hold agents, and together all of them.
  const held = await eventually(
    () => Promise.all(s.replicas.map((r) => connectedAgents(r.url, s.ca))),
    (n) => n[0]! + n[1]! === agents,
    "every agent counted on one replica or the other",
  );
  assert.ok(held[0]! > 0 && held[1]! > 0, `held per replica: ${held.join(", ")}`);

  // One account change for every agent, through the load balancer as an operator makes it, signed
  // with the first replica's CLI credential (the second one, starting on the same host, wrote its own).
  const accounts = createClient(AccountService, await s.operatorTransport());
  const { changeSet } = await accounts.createChangeSet({
    description: "replica failover",
    selection: { selection: { case: "filter", value: { users: ["main-user0"] } } },
    edits: [{ edit: { case: "setDescription", value: "moved" } }],
  });
  assert.is(changeSet!.counts!.pending, agents, "one change per agent");

  // Killed while its agents are getting their commands and reporting.
  const killedAt = new Date();
  await s.kill(0);
  const killed = performance.now();
  await f.until("the kill seen by the agents", (t) => t.streamsOpen < agents, 30_000);
  await f.until("every agent's stream open again", (t) => t.streamsOpen === agents, 60_000);
  const backSeconds = (performance.now() - killed) / 1000;
  assert.ok(backSeconds <= 60, `back after ${backSeconds.toFixed(1)} s`);
  // The survivor's gauge settles once it has noticed the streams of attempts the agents gave up on.
  const survivor = await eventually(
    () => connectedAgents(s.replicas[1]!.url, s.ca),
    (n) => n === agents,
    "the survivor counting exactly the agents it holds",
    60_000,
  ).catch(async () => connectedAgents(s.replicas[1]!.url, s.ca));
  assert.is(survivor, agents, "the survivor holds them all");

  // Every command applied, each run exactly once (a delivery again is acknowledged, not run).
  await eventually(
    async () => (await s.db("change_set_items").where({ change_set_id: changeSet!.id, status: "applied" }).count({ n: "*" }))[0]!.n,
    (n) => Number(n) === agents,
    "every change set item applied",
    120_000,
  );
  const commands = await s
    .db("commands")
    .whereIn("id", s.db("change_set_items").where({ change_set_id: changeSet!.id }).select("command_id"))
    .select("id", "status", "server_id");
  assert.is(commands.length, agents, "one command per agent");
  assert.is(new Set(commands.map((c: { server_id: string }) => c.server_id)).size, agents, "one command per server");
  assert.ok(
    commands.every((c: { status: string }) => c.status === "succeeded"),
    "every command succeeded",
  );
  await f.until("the runs counted", () => commands.every((c: { id: string }) => f.commandRuns().get(c.id)?.ran === 1), 30_000);
  const twice = [...f.commandRuns()].filter(([, r]) => r.ran > 1);
  assert.is(twice.length, 0, `run twice: ${twice.map(([id]) => id).join(", ")}`);

  // Liveness: every agent heard from through the survivor, nobody marked unreachable.
  await eventually(
    async () => (await s.db("servers").where("last_seen_at", "<=", killedAt).count({ n: "*" }))[0]!.n,
    (n) => Number(n) === 0,
    "every server heard from since the kill",
    heartbeatSeconds * missedHeartbeats * 1000,
  );
  assert.is(await scanLiveness(s.db, async () => "none", heartbeatSeconds, missedHeartbeats), 0, "servers the liveness scan marks unreachable");
  const alarms = await s.db("alerts").where({ kind: "server_unreachable" }).count({ n: "*" });
  assert.is(Number(alarms[0]!.n), 0, "server_unreachable alerts raised by the replicas' own scans");
  const spells = await refusalSpells(s.db);
  console.log(
    `  agents back on the survivor ${backSeconds.toFixed(1)} s after the kill; spells of refusing calls (not counted as silence): ${spells.spells}, ${spells.refused} calls refused; ${describe(f.totals())}`,
  );
}

test.run();
