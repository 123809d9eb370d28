import { cp } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { createCommands, waitForCommands } from "../../services/agents/commands.js";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { connectedAgents } from "../../services/lib/metrics.js";
import { type CliProcess, makeTempDir, runAgentCli } from "../helpers/cli.js";
import { eventually } from "../helpers/eventually.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";
import { startTcpRelay, type TcpRelay } from "../helpers/tcp-relay.js";

/**
 * The network between a real agent process and the panel, through a relay the test controls:
 * cut, black hole (nothing passes, nobody is told), 2 s latency each way, half-open (the panel's
 * side closed, the agent's side silent). Keepalive is shortened for the test on both sides (agent
 * PING every 5 s, panel PING every 5 s); the defaults (45 s and 30 s) give the same behaviour in
 * about a minute.
 */
const test = suite("network faults between agent and panel: detected, backed off, resumed, each command once");

const keepaliveSeconds = 5;
const fixtures = resolve(import.meta.dirname, "../fixtures/oscam");

let panel: PanelHost;
let relay: TcpRelay;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
let agent: CliProcess;
let serverId: string;
const crypto = () => createClient(CryptoService, panel.host.transportFor(CryptoService));
const lines = (pattern: string) =>
  agent
    .stderr()
    .split("\n")
    .filter((l) => l.includes(pattern));
/** Resolves once the agent logs that it lost the panel or its stream, after the lines it had logged so far. */
const noticed = async () => {
  const lost = () =>
    lines('"msg":"the panel is unreachable; retrying with backoff"').length + lines('"msg":"command stream broken; reconnecting with backoff"').length;
  const before = lost();
  await eventually(
    async () => lost(),
    (n) => n > before,
    "the agent to notice the connection is dead",
    60_000,
  );
};
const connected = async () => (await connectedAgents.get()).values[0]?.value ?? 0;
const lastSeen = async () => (await panel.db("servers").where({ id: serverId }).first()).last_seen_at as Date;

/** A resync command sent now; resolves when it succeeded, checking the agent ran it exactly once. */
async function commandRunsOnce(what: string, during?: () => Promise<void>) {
  const [command] = await createCommands(panel.db, crypto(), { serverIds: [serverId], kind: "resync", createdBy: "test" });
  await during?.();
  const [done] = await waitForCommands(panel.db, [command!.id], 90_000);
  assert.is(done!.status, "succeeded", `${what}: ${done!.result}`);
  const runs = lines(`"commandId":"${command!.id}"`).filter((l) => l.includes('"msg":"running command"')).length;
  assert.is(runs, 1, `${what}: the agent ran the command once`);
}

test.before(async () => {
  dir = await makeTempDir("network_faults");
  await cp(join(fixtures, "main"), join(dir.path, "oscam/main"), { recursive: true });
  panel = await startPanelHost("network_faults", { AGENT_HEARTBEAT_INTERVAL_SECONDS: "1", HTTP2_PING_INTERVAL_SECONDS: String(keepaliveSeconds) });
  await panel.setLicense(10, 10);
  relay = await startTcpRelay(Number(new URL(panel.url).port));
  const relayUrl = `https://127.0.0.1:${relay.port}`;
  const { token } = await createInstallToken(panel.db, { server: "net-1", createdBy: "test" });
  const stateDir = join(dir.path, "state");
  const reg = runAgentCli(
    [
      "register",
      "--panel",
      relayUrl,
      "--pin",
      panel.host.tls.fingerprint,
      "--token-stdin",
      "--oscam-dir",
      join(dir.path, "oscam/main"),
      "--state-dir",
      stateDir,
    ],
    {},
    token,
  );
  assert.is(await reg.exited, 0, reg.stderr());
  serverId = (await panel.db("servers").where({ name: "net-1" }).first()).id;
  agent = runAgentCli(["run", "--state-dir", stateDir, "--unit-dir", join(dir.path, "no-units")], {
    MYOSICAM_AGENT_KEEPALIVE_SECONDS: String(keepaliveSeconds),
  });
  await agent.waitForStderr(/"msg":"command stream open"/);
});
test.after(async () => {
  if (agent && agent.child.exitCode === null) agent.child.kill("SIGKILL");
  await relay?.stop();
  await panel?.stop();
  await dir?.remove();
});

test("cut: the agent reconnects and a command sent meanwhile runs once", async () => {
  const started = performance.now();
  const opened = lines('"msg":"command stream open"').length;
  await commandRunsOnce("after a cut", async () => relay.cut());
  await eventually(
    async () => lines('"msg":"command stream open"').length,
    (n) => n > opened,
    "the stream to reopen",
  );
  console.log(`faults: cut: the command ran once, ${((performance.now() - started) / 1000).toFixed(1)} s after the cut`);
});

test("black hole: both sides find the dead connection within their keepalive window, and the agent resumes when packets pass again", async () => {
  await eventually(connected, (n) => n === 1, "the agent's stream to be held");
  const started = performance.now();
  const noticing = noticed();
  relay.fault({ kind: "blackhole" });
  await noticing;
  const agentNoticedMs = performance.now() - started;
  await eventually(connected, (n) => n === 0, "the panel to free the dead stream", 30_000);
  const panelFreedMs = performance.now() - started;
  const reconnectsBefore = relay.accepted();
  const healed = performance.now();
  await commandRunsOnce("after a black hole", async () => relay.fault({ kind: "pass" }));
  await eventually(connected, (n) => n === 1, "the stream to be held again");
  const attempts = relay.accepted() - reconnectsBefore;
  console.log(
    `faults: black hole: the agent noticed after ${(agentNoticedMs / 1000).toFixed(1)} s, the panel freed the stream after ${(panelFreedMs / 1000).toFixed(1)} s (keepalive ${keepaliveSeconds} s); once packets passed again the command ran ${((performance.now() - healed) / 1000).toFixed(1)} s later, ${attempts} new connection(s)`,
  );
  assert.ok(agentNoticedMs < keepaliveSeconds * 4 * 1000, `the agent noticed within its keepalive window (${(agentNoticedMs / 1000).toFixed(1)} s)`);
  assert.ok(panelFreedMs < keepaliveSeconds * 4 * 1000, `the panel freed the stream within its keepalive window (${(panelFreedMs / 1000).toFixed(1)} s)`);
});

test("accepted and never answered: the agent gives up a silent new connection after its connect timeout and tries again, then resumes", async () => {
  await eventually(connected, (n) => n === 1, "the agent's stream to be held");
  relay.fault({ kind: "blackhole" });
  const before = relay.accepted();
  // Its connection cut: the agent connects again at once, into a relay that accepts and says nothing.
  relay.cut();
  const started = performance.now();
  await eventually(
    async () => relay.accepted() - before,
    (n) => n >= 2,
    "the agent to give up the silent connection and open another (without a connect timeout it waits on the first for good)",
    60_000,
  );
  const retriedMs = performance.now() - started;
  await commandRunsOnce("after silent connections", async () => relay.fault({ kind: "pass" }));
  console.log(`faults: accepted and never answered: the agent opened a new connection after ${(retriedMs / 1000).toFixed(1)} s, then resumed`);
});

test("2 s of latency each way: heartbeats and commands go on, slowly, without reconnecting", async () => {
  await eventually(connected, (n) => n === 1, "the agent's stream to be held");
  relay.fault({ kind: "latency", ms: 2000 });
  const started = performance.now();
  const before = await lastSeen();
  const accepted = relay.accepted();
  const brokenBefore = lines("reconnecting").length;
  await commandRunsOnce("with 2 s latency");
  await eventually(lastSeen, (t) => t > before, "a heartbeat through the slow link", 30_000);
  assert.is(relay.accepted(), accepted, "no new connection: a slow link is not a dead one");
  assert.is(lines("reconnecting").length, brokenBefore, "the command stream was not torn down");
  console.log(
    `faults: 2 s latency: the command ran once and heartbeats went on within ${((performance.now() - started) / 1000).toFixed(1)} s, no reconnection`,
  );
  relay.fault({ kind: "pass" });
});

test("half-open: the panel's side closed, the agent's side silent: the panel frees the stream at once, the agent notices by keepalive and resumes", async () => {
  await eventually(connected, (n) => n === 1, "the agent's stream to be held");
  const started = performance.now();
  const noticing = noticed();
  relay.fault({ kind: "halfOpen" });
  await eventually(connected, (n) => n === 0, "the panel to free the stream", 10_000);
  await noticing;
  const agentNoticedMs = performance.now() - started;
  const healed = performance.now();
  await commandRunsOnce("after a half-open connection", async () => relay.fault({ kind: "pass" }));
  console.log(
    `faults: half-open: the panel freed the stream at once, the agent noticed after ${(agentNoticedMs / 1000).toFixed(1)} s (keepalive ${keepaliveSeconds} s); the command ran ${((performance.now() - healed) / 1000).toFixed(1)} s after the link healed`,
  );
  assert.ok(agentNoticedMs < keepaliveSeconds * 4 * 1000, `the agent noticed within its keepalive window (${(agentNoticedMs / 1000).toFixed(1)} s)`);
});

test.run();
