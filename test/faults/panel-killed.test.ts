import { createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { describe, type Fleet, startFleet } from "../../bench/fleet/fleet.js";
import { CommandKind } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { AlertKind, AlertService } from "../../gen/myosicam/panel/v1/alert_pb.js";
import { CommandService, CommandStatus } from "../../gen/myosicam/panel/v1/command_pb.js";
import { ServerService } from "../../gen/myosicam/panel/v1/server_pb.js";
import { localCredentialFile, readCliCredential } from "../../services/lib/cli-credential.js";
import { freePort } from "../../services/lib/embedded-postgres.js";
import { createSignedTransport } from "../../services/lib/hmac/signing-client.js";
import { eventually } from "../helpers/eventually.js";
import { parentPid } from "../helpers/processes.js";
import { faultsLong } from "../helpers/fault-mode.js";
import { getHttp2 } from "../helpers/https.js";
import { seededRandom } from "../helpers/message-fuzz.js";
import { roomForFleet, settingsFile, startUpProcess, type UpProcess } from "../helpers/up-process.js";

/**
 * `myosicam up` (with its embedded PostgreSQL) killed with SIGKILL at random points while 50
 * emulated agents heartbeat and a stream of commands flows to them, then started again, 5 times
 * (20 with FAULTS_LONG=1). Every command the panel stored reaches a final state and was run once
 * by its agent; every agent is back within 60 s of each start; no server is marked unreachable;
 * no PostgreSQL is left running on the data directory.
 */
const test = suite("the panel killed under load");

const kills = faultsLong ? 20 : 5;
const agents = 50;
const heartbeatSeconds = 5;
const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);

let stack: UpProcess;
const started = performance.now();
/** Where the test is, on stderr: a run that hangs shows its last step (npm test prints the output of a file it stops). */
const step = (what: string) => process.stderr.write(`panel-killed ${((performance.now() - started) / 1000).toFixed(1)} s: ${what}\n`);
let fleet: Fleet | undefined;

/** The stream of commands runs while this is true; `after` ends it too, so a failed assertion does not leave it looping (it once held the file's process for minutes). */
let sending = false;

test.after(async () => {
  sending = false;
  await fleet?.stop();
  await stack?.stop();
});

/**
 * The postmaster processes serving the data directory (PostgreSQL started with -D on it). A process
 * the postmaster has just forked shows the same command line until it names itself: it is not
 * counted (it once made two postmasters of one).
 */
const postmasters = async () => {
  const onDataDir = (await stack.processesOnDataDir()).filter((p) => / -D /.test(p) && !/\bsh -c\b/.test(p) && /postgres/.test(p));
  const pids = new Set(onDataDir.map((p) => Number(p.split(":")[0])));
  const found: string[] = [];
  for (const p of onDataDir) if (!pids.has((await parentPid(Number(p.split(":")[0]))) ?? 0)) found.push(p);
  return found;
};

test("SIGKILL at random points under load: no command lost or run twice, every agent back within 60 s, no false unreachable, no PostgreSQL left behind", async () => {
  const random = seededRandom(seed);
  stack = await startUpProcess(
    "killed",
    {
      PANEL_PORT: String(await freePort()),
      ADMIN_PORT: String(await freePort()),
      AGENT_HEARTBEAT_INTERVAL_SECONDS: String(heartbeatSeconds),
      AGENT_MISSED_HEARTBEATS: "3",
      REGISTRATION_FAILURES_PER_MINUTE: "10000",
    },
    roomForFleet,
  );
  const url = stack.report.listeners.panel.url;
  const { ca } = stack;
  const credential = (await readCliCredential(localCredentialFile(stack.report.dataDir)))!;
  const transport = createSignedTransport({
    baseUrl: url,
    ca,
    credentials: { callerId: credential.clientId, secret: credential.secret },
    defaultTimeoutMs: 10_000,
  });
  const servers = createClient(ServerService, transport);
  const commands = createClient(CommandService, transport);
  const metricsToken = (await settingsFile(stack.configFile)).METRICS_TOKEN!;
  const connectedAgents = async () => {
    const res = await getHttp2(`${url}/metrics`, ca, { authorization: `Bearer ${metricsToken}` }).catch(() => undefined);
    return Number(/^myosicam_connected_agents (\d+)$/m.exec(res?.body ?? "")?.[1] ?? -1);
  };

  const seeds = [];
  for (let i = 0; i < agents; i++) {
    const added = await servers.addServer({ name: `killed-${i}` });
    seeds.push({ name: `killed-${i}`, installToken: added.bootstrap!.installToken });
  }
  fleet = await startFleet({
    url,
    ca,
    agents: seeds,
    workers: 2,
    rampPerSecond: 50,
    behaviour: { heartbeatSeconds, syncSeconds: 600, instances: [1, 1], accounts: [5, 10] },
    deadlineMs: 15 * 60_000,
  });
  const f = fleet;
  step("fleet started");
  await f.until("every agent synced with its stream open", (t) => t.synced >= agents && t.streamsOpen === agents, 120_000);
  await eventually(connectedAgents, (n) => n === agents, "the panel to hold every agent's stream", 60_000);
  const serverIds = (await servers.listServers({ pageSize: 100 })).servers.map((s) => s.id);
  assert.is(serverIds.length, agents);
  step("every agent synced and connected");

  // The stream of commands: one resync to a random server after another, as long as the test runs.
  const accepted: string[] = [];
  let refused = 0;
  sending = true;
  const sender = (async () => {
    while (sending) {
      const target = serverIds[random.int(serverIds.length)]!;
      try {
        const res = await commands.sendCommand({ targets: [{ serverId: target }], kind: CommandKind.RESYNC });
        accepted.push(...res.commands.map((c) => c.id));
      } catch {
        // The panel is down (or just went down): the caller was told; the command may or may not be stored.
        refused++;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  })();

  const backTimes: number[] = [];
  for (let k = 0; k < kills; k++) {
    // A random point: between 0.5 and 4 s into a stretch of commands and heartbeats.
    await new Promise((r) => setTimeout(r, 500 + random.int(3500)));
    const killedAt = performance.now();
    step(`kill ${k + 1}`);
    await stack.restart("SIGKILL");
    step(`started again after kill ${k + 1}`);
    assert.ok((await postmasters()).length <= 1, `after restart ${k + 1}, one PostgreSQL serves the data directory: ${(await postmasters()).join("; ")}`);
    await eventually(connectedAgents, (n) => n === agents, `every agent back after kill ${k + 1}; ${describe(f.totals())}`, 60_000);
    backTimes.push((performance.now() - killedAt) / 1000);
  }
  sending = false;
  await sender;
  step("commands stopped; waiting for every stored command to be final");

  // Every command the panel stored, whatever its caller was told, reaches a final state.
  const all = async () => {
    const found = [];
    let pageToken = "";
    do {
      const page = await commands.listCommands({ pageSize: 500, pageToken });
      found.push(...page.commands);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return found;
  };
  const stored = await eventually(
    all,
    (list) => list.every((c) => c.status === CommandStatus.SUCCEEDED || c.status === CommandStatus.FAILED || c.status === CommandStatus.EXPIRED),
    "every stored command to be final",
    90_000,
  );
  const storedIds = new Set(stored.map((c) => c.id));
  const lost = accepted.filter((id) => !storedIds.has(id));
  const notSucceeded = stored.filter((c) => c.status !== CommandStatus.SUCCEEDED).map((c) => `${c.id} ${CommandStatus[c.status]} ${c.result}`);
  // The workers report what they ran once a second: wait for the last reports before comparing.
  const succeededIds = stored.filter((c) => c.status === CommandStatus.SUCCEEDED).map((c) => c.id);
  await eventually(
    async () => f.commandRuns(),
    (r) => succeededIds.every((id) => r.has(id)),
    "the emulator's reports of the last commands it ran",
    15_000,
  ).catch(() => undefined);
  const runs = f.commandRuns();
  const twice = [...runs].filter(([, r]) => r.ran > 1).map(([id]) => id);
  const succeededNotRun = stored.filter((c) => c.status === CommandStatus.SUCCEEDED && (runs.get(c.id)?.ran ?? 0) !== 1).map((c) => c.id);
  const alerts = await createClient(AlertService, transport).listAlerts({ kinds: [AlertKind.SERVER_UNREACHABLE], pageSize: 500 });

  step("stopping the fleet");
  await f.stop();
  fleet = undefined;
  step("stopping the panel");
  await stack.stop();
  step("stopped");
  const leftBehind = await stack.processesOnDataDir();
  console.log(
    `faults: panel SIGKILLed ${kills} times under load (FUZZ_SEED=${seed}): ${lost.length} of ${accepted.length} accepted commands lost (${stored.length} stored, ${refused} calls refused while it was down), ` +
      `${twice.length} run twice, ${notSucceeded.length} not succeeded; agents back after ${backTimes.map((t) => t.toFixed(1)).join(", ")} s; ` +
      `${alerts.alerts.length} unreachable alerts; ${leftBehind.length} processes left on the data directory`,
  );
  assert.equal(lost, [], "every command the panel accepted was stored");
  assert.equal(notSucceeded, [], "every stored command succeeded");
  assert.equal(twice, [], "no command was run twice");
  assert.equal(succeededNotRun, [], "the panel's states and the agents' runs agree");
  assert.ok(
    backTimes.every((t) => t <= 60),
    `every agent back within 60 s of each kill (${backTimes.map((t) => t.toFixed(1)).join(", ")} s)`,
  );
  assert.is(alerts.alerts.length, 0, `no server marked unreachable: ${alerts.alerts.map((a) => a.message).join("; ")}`);
  assert.equal(leftBehind, [], "no PostgreSQL (or anything else) left running on the data directory");
});

test.run();
