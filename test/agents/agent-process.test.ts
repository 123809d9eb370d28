import { once } from "node:events";
import { cp, readFile, stat, writeFile } from "node:fs/promises";
import { createSecureServer } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AgentService } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { agentIncompatibility } from "../../services/lib/releases/compatibility.js";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { createKeyring } from "../../services/lib/secrets/keyring.js";
import { eventually } from "../helpers/eventually.js";
import { makeTempDir, runAgentCli, type CliProcess } from "../helpers/cli.js";
import { newKey } from "../helpers/keys.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";
import { startTcpRelay } from "../helpers/tcp-relay.js";

const test = suite("the agent process: register, heartbeat, survive the panel going away");

let panel: PanelHost;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
let agent: CliProcess | undefined;
const stateDir = () => join(dir.path, "state");
const issue = async (server: string) => (await createInstallToken(panel.db, { server, createdBy: "test" })).token;
const register = (token: string, extra: string[] = [], env: Record<string, string> = {}) =>
  runAgentCli(["register", "--panel", panel.url, "--pin", panel.host.tls.fingerprint, "--token-stdin", "--state-dir", stateDir(), ...extra], env, token);

test.before(async () => {
  dir = await makeTempDir("agent_process");
  panel = await startPanelHost("agent_process", { AGENT_HEARTBEAT_INTERVAL_SECONDS: "1" });
  await panel.setLicense(10);
});
test.after(async () => {
  if (agent && agent.child.exitCode === null) agent.child.kill("SIGKILL");
  await panel.stop();
  await dir.remove();
});

test("register writes a 0600 state file whose agent token is not readable in plaintext", async () => {
  const reg = register(await issue("proc-1"));
  assert.is(await reg.exited, 0, reg.stderr());
  assert.match(reg.stdout(), /^registered as server [0-9a-f-]{36}\n$/);
  const file = join(stateDir(), "agent.json");
  assert.is((await stat(file)).mode & 0o777, 0o600);
  assert.is((await stat(stateDir())).mode & 0o777, 0o700);
  const state = JSON.parse(await readFile(file, "utf8"));
  const row = await panel.db("servers").where({ id: state.serverId }).first();
  const token = createKeyring(newKey).open(row.agent_token, { table: "servers", column: "agent_token", rowId: row.id }).plaintext.toString();
  const text = await readFile(file, "utf8");
  assert.not.ok(text.includes(token), "the agent token is sealed");
  assert.is(state.pin, panel.host.tls.fingerprint);
});

test("a registration that finds the panel unreachable keeps its agent id and retries until it is answered", async () => {
  const relay = await startTcpRelay(Number(new URL(panel.url).port));
  try {
    await relay.down();
    const retryDir = join(dir.path, "retrying");
    const reg = runAgentCli(
      ["register", "--panel", `https://127.0.0.1:${relay.port}`, "--token-stdin", "--state-dir", retryDir],
      { NODE_EXTRA_CA_CERTS: panel.host.tls.certFile! },
      await issue("proc-retry"),
    );
    await reg.waitForStderr(/"msg":"registration not answered; retrying"/);
    const kept = JSON.parse(await readFile(join(retryDir, "agent.json"), "utf8"));
    assert.match(kept.agentId, /^[0-9a-f-]{36}$/, "the agent id is kept before the panel answers");
    assert.is(kept.serverId, undefined);
    await relay.up();
    assert.is(await reg.exited, 0, reg.stderr());
    const state = JSON.parse(await readFile(join(retryDir, "agent.json"), "utf8"));
    assert.is(state.agentId, kept.agentId);
    const row = await panel.db("servers").where({ id: state.serverId }).first();
    assert.is(row.agent_id, kept.agentId);
  } finally {
    await relay.stop();
  }
});

test("run heartbeats: last_seen_at moves; the panel going away and coming back is survived without a restart", async () => {
  const state = JSON.parse(await readFile(join(stateDir(), "agent.json"), "utf8"));
  const seen = async () => (await panel.db("servers").where({ id: state.serverId }).first()).last_seen_at as Date;
  const first = await seen();
  agent = runAgentCli(["run", "--state-dir", stateDir()], {});
  await agent.waitForStderr(/"msg":"connected to the panel"/);
  const moved = await eventually(seen, (t) => t > first, "a heartbeat");
  await eventually(seen, (t) => t > moved, "a second heartbeat");

  await panel.pause();
  await agent.waitForStderr(/"msg":"the panel is unreachable; retrying with backoff"/);
  await panel.resume();
  const lines = () =>
    agent!
      .stderr()
      .split("\n")
      .filter((l) => l.includes('"msg":"connected to the panel"')).length;
  await eventually(
    async () => lines(),
    (n) => n >= 2,
    "the agent to reconnect",
  );
  assert.is(
    agent
      .stderr()
      .split("\n")
      .filter((l) => l.includes("unreachable; retrying")).length,
    1,
    "one line per state change, not per retry",
  );
  const before = await seen();
  await eventually(seen, (t) => t > before, "heartbeats after the panel came back");
  agent.child.kill("SIGTERM");
  assert.is(await agent.exited, 0);
});

test("when its token is rotated elsewhere, the agent stops being accepted, and re-registers from a waiting install token", async () => {
  const state = JSON.parse(await readFile(join(stateDir(), "agent.json"), "utf8"));
  agent = runAgentCli(["run", "--state-dir", stateDir()], {});
  await agent.waitForStderr(/"msg":"connected to the panel"/);
  // Another bootstrap for the same server name rotates the token: this agent's is refused.
  const other = runAgentCli(
    ["register", "--panel", panel.url, "--pin", panel.host.tls.fingerprint, "--token-stdin", "--state-dir", join(dir.path, "elsewhere")],
    {},
    await issue("proc-1"),
  );
  assert.is(await other.exited, 0, other.stderr());
  await agent.waitForStderr(/"msg":"the panel refused the agent token/);
  // A bootstrap re-run on this host leaves a fresh token where the running agent looks for it.
  await writeFile(join(stateDir(), "install-token"), await issue("proc-1"), { mode: 0o600 });
  await agent.waitForStderr(/"msg":"registered with the panel"/);
  const connected = () =>
    agent!
      .stderr()
      .split("\n")
      .filter((l) => l.includes('"msg":"connected to the panel"')).length;
  await eventually(
    async () => connected(),
    (n) => n >= 2,
    "the agent to reconnect with its new token",
  );
  const after = JSON.parse(await readFile(join(stateDir(), "agent.json"), "utf8"));
  assert.is(after.serverId, state.serverId, "the same server");
  assert.is.not(after.sealedToken, state.sealedToken, "a new token");
  agent.child.kill("SIGTERM");
  assert.is(await agent.exited, 0);
});

test("a panel that refuses this agent's version: the agent logs the panel's reason, keeps its token and its command stream (for the upgrade)", async () => {
  // A panel of a later version, for what this one cannot be made to do on cue: the same
  // certificate (the agent's pin holds), every heartbeat refused as a panel 0.3.0 refuses agent 0.1.0.
  const reason = agentIncompatibility("0.1.0", "0.3.0")!;
  const later = createSecureServer(
    { cert: panel.host.tls.cert, key: panel.host.tls.key, allowHTTP1: true },
    connectNodeAdapter({
      routes: (router) =>
        router.service(AgentService, {
          heartbeat() {
            throw new ConnectError(reason, Code.FailedPrecondition);
          },
          // The command stream stays open to a refused agent: an upgrade can still reach it.
          async *subscribe(_req, ctx) {
            yield { message: { case: "keepalive", value: {} } };
            await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
          },
        }),
    }),
  );
  later.listen(0, "127.0.0.1");
  await once(later, "listening");
  const laterDir = join(dir.path, "later");
  await cp(stateDir(), laterDir, { recursive: true });
  const state = JSON.parse(await readFile(join(laterDir, "agent.json"), "utf8"));
  await writeFile(join(laterDir, "agent.json"), JSON.stringify({ ...state, panelUrl: `https://127.0.0.1:${(later.address() as { port: number }).port}` }), {
    mode: 0o600,
  });
  const refused = runAgentCli(["run", "--state-dir", laterDir], {});
  try {
    await refused.waitForStderr(/"msg":"the panel refuses this agent: agent 0\.1\.0 is too old for this panel/);
    assert.match(refused.stderr(), /upgrade it with `npx myosicam rollout start --version 0\.3\.0`/);
    await refused.waitForStderr(/"msg":"command stream open"/);
    assert.is(JSON.parse(await readFile(join(laterDir, "agent.json"), "utf8")).sealedToken, state.sealedToken, "the token is kept");
  } finally {
    refused.child.kill("SIGTERM");
    await refused.exited;
    later.close();
  }
});

test("a wrong pin is a clear error that is not retried", async () => {
  const wrong = `sha256:${"0".repeat(64)}`;
  const reg = runAgentCli(
    ["register", "--panel", panel.url, "--pin", wrong, "--token-stdin", "--state-dir", join(dir.path, "other")],
    {},
    await issue("proc-2"),
  );
  assert.is(await reg.exited, 3);
  assert.match(reg.stderr(), /presented certificate sha256:[0-9a-f]{64}, but the pinned fingerprint is sha256:0{64}/);
});

test("a keepalive setting that is not a whole number of seconds stops the agent at start, naming it", async () => {
  for (const value of ["abc", "0", "3601"]) {
    const run = runAgentCli(["run", "--state-dir", stateDir()], { MYOSICAM_AGENT_KEEPALIVE_SECONDS: value });
    assert.is(await run.exited, 1, run.stderr());
    assert.match(run.stderr(), new RegExp(`MYOSICAM_AGENT_KEEPALIVE_SECONDS must be a whole number of seconds between 1 and 3600, got "${value}"`));
  }
});

test("http:// is refused unless MYOSICAM_ALLOW_INSECURE=1", async () => {
  const reg = runAgentCli(["register", "--panel", "http://127.0.0.1:1", "--token-stdin", "--state-dir", join(dir.path, "insecure")], {}, "a".repeat(64));
  assert.is(await reg.exited, 1);
  assert.match(reg.stderr(), /refusing http:\/\//);
});

test.run();
