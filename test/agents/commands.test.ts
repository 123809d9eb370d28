import { cp, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { CommandOutcome } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { claimCommandsFor, createCommands, expireCommands, listCommands, waitForCommands } from "../../services/agents/commands.js";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { selectServices } from "../../services/index.js";
import { startHost } from "../../services/host.js";
import { makeTempDir, runAgentCli, runCli, type CliProcess } from "../helpers/cli.js";
import { eventually } from "../helpers/eventually.js";
import { newKey } from "../helpers/keys.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const fixtures = resolve(import.meta.dirname, "../fixtures/oscam");
const test = suite("commands as data: delivery over the agent's stream, redelivery, results, expiry");

let panel: PanelHost;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
let agent: CliProcess | undefined;
let serverId: string;
const stateDir = () => join(dir.path, "state");
const crypto = () => createClient(CryptoService, panel.host.transportFor(CryptoService));
const startAgent = async () => {
  agent = runAgentCli(["run", "--state-dir", stateDir(), "--unit-dir", join(dir.path, "no-units")], {});
  await agent.waitForStderr(/"msg":"command stream open"/);
};
const stopAgent = async () => {
  agent!.child.kill("SIGTERM");
  await agent!.exited;
};
const lines = (pattern: string) =>
  agent!
    .stderr()
    .split("\n")
    .filter((l) => l.includes(pattern)).length;

test.before(async () => {
  dir = await makeTempDir("commands");
  await cp(join(fixtures, "main"), join(dir.path, "oscam/main"), { recursive: true });
  panel = await startPanelHost("agents_commands", { AGENT_HEARTBEAT_INTERVAL_SECONDS: "1" });
  await panel.setLicense(10, 10);
  const { token } = await createInstallToken(panel.db, { server: "cmd-1", createdBy: "test" });
  const reg = runAgentCli(
    [
      "register",
      "--panel",
      panel.url,
      "--pin",
      panel.host.tls.fingerprint,
      "--token-stdin",
      "--oscam-dir",
      join(dir.path, "oscam/main"),
      "--state-dir",
      stateDir(),
    ],
    {},
    token,
  );
  assert.is(await reg.exited, 0, reg.stderr());
  serverId = (await panel.db("servers").where({ name: "cmd-1" }).first()).id;
  await startAgent();
});
test.after(async () => {
  if (agent && agent.child.exitCode === null) agent.child.kill("SIGKILL");
  await panel.stop();
  await dir.remove();
});

test("a resync command reaches the running agent at once, runs, and its result is recorded", async () => {
  const syncsBefore = lines('"msg":"synced with the panel"');
  const [command] = await createCommands(panel.db, crypto(), { serverIds: [serverId], kind: "resync", createdBy: "test" });
  const [done] = await waitForCommands(panel.db, [command!.id], 20_000);
  assert.is(done!.status, "succeeded", done!.result);
  assert.match(done!.result, /resynced/);
  assert.is(done!.attempts, 1);
  await eventually(
    async () => lines('"msg":"synced with the panel"'),
    (n) => n > syncsBefore,
    "the resync",
  );
});

test("a command from another process (the CLI) is delivered through NOTIFY; --wait reports the result", async () => {
  const cli = runCli(["command", "send", "--server", "cmd-1", "--kind", "resync", "--wait", "--json"], {
    MYOSICAM_DATA_DIR: panel.dataDir,
    DATABASE_URL: panel.config.databaseUrl!,
    PANEL_ENCRYPTION_KEY: newKey,
    LOG_LEVEL: "warn",
  });
  assert.is(await cli.exited, 0, cli.stderr());
  assert.is(JSON.parse(cli.stdout()).command.status, "succeeded");
});

const cliEnv = () => ({ MYOSICAM_DATA_DIR: panel.dataDir, DATABASE_URL: panel.config.databaseUrl!, PANEL_ENCRYPTION_KEY: newKey, LOG_LEVEL: "warn" });

test("--wait exits 1 when the command failed, with --json as without", async () => {
  for (const format of [["--json"], []]) {
    const cli = runCli(["command", "send", "--server", "cmd-1", "--kind", "reload", "--instance", "no-such-instance", "--wait", ...format], cliEnv());
    assert.is(await cli.exited, 1, `${format.join(" ") || "plain"}: ${cli.stdout()}${cli.stderr()}`);
    assert.match(cli.stdout(), /failed/);
  }
});

test("--payload-file and --payload - carry a payload too large for an argument list (2,150 changes)", async () => {
  const changes = Array.from({ length: 2150 }, () => ({ operation: "ACCOUNT_OPERATION_ENABLE", user: "bedroom" }));
  const file = join(dir.path, "changes.json");
  await writeFile(file, JSON.stringify({ changes }));
  const fromFile = runCli(
    ["command", "send", "--server", "cmd-1", "--kind", "apply_accounts", "--instance", "main", "--payload-file", file, "--wait", "--json"],
    cliEnv(),
  );
  assert.is(await fromFile.exited, 0, fromFile.stderr());
  assert.is(JSON.parse(fromFile.stdout()).command.status, "succeeded");
  const fromStdin = runCli(
    ["command", "send", "--server", "cmd-1", "--kind", "apply_accounts", "--instance", "main", "--payload", "-", "--json"],
    cliEnv(),
    undefined,
    JSON.stringify({ changes }),
  );
  assert.is(await fromStdin.exited, 0, fromStdin.stderr());
  assert.is(JSON.parse(fromStdin.stdout()).command.kind, "apply_accounts");
  const notJson = runCli(["command", "send", "--server", "cmd-1", "--kind", "apply_accounts", "--payload-file", join(dir.path, "missing.json")], cliEnv());
  assert.is(await notJson.exited, 1);
  assert.match(notJson.stderr(), /--payload-file .*missing\.json cannot be read \(ENOENT\)/);
});

test("an apply_accounts of 10,000 changes reaches the agent and is applied in full", async () => {
  let file = "";
  for (let i = 0; i < 10_000; i++) file += `[account]\nuser = u${i}\npwd = p${i}\n\n`;
  await writeFile(join(dir.path, "oscam/main/oscam.user"), file);
  const changes = Array.from({ length: 10_000 }, (_, i) => ({ operation: "ACCOUNT_OPERATION_UPDATE", user: `u${i}`, set: [{ key: "pwd", value: `n${i}` }] }));
  const [command] = await createCommands(panel.db, crypto(), {
    serverIds: [serverId],
    instance: "main",
    kind: "apply_accounts",
    payload: { changes },
    createdBy: "test",
  });
  const [done] = await waitForCommands(panel.db, [command!.id], 60_000);
  // No OScam runs in this test: the file is written in full and kept for OScam's next start.
  assert.match(done!.result, /^oscam\.user written \(10000 changes\); OScam is not running/, done!.result);
  const text = await readFile(join(dir.path, "oscam/main/oscam.user"), "utf8");
  assert.ok(text.includes("user = u9999\npwd = n9999\n") && text.includes("user = u0\npwd = n0\n"));
  await cp(join(fixtures, "main/oscam.user"), join(dir.path, "oscam/main/oscam.user"));
});

test("a command the panel cannot open fails at once with the reason, and the command behind it is delivered", async () => {
  await stopAgent();
  const [bad] = await createCommands(panel.db, crypto(), {
    serverIds: [serverId],
    instance: "main",
    kind: "apply_accounts",
    payload: { changes: [{ operation: "ACCOUNT_OPERATION_ENABLE", user: "bedroom" }] },
    createdBy: "test",
  });
  // Its envelope altered: it no longer opens (DataLoss from the crypto service).
  const stored = await panel.db("commands").where({ id: bad!.id }).first();
  const [good] = await createCommands(panel.db, crypto(), { serverIds: [serverId], kind: "resync", createdBy: "test" });
  await panel
    .db("commands")
    .where({ id: bad!.id })
    .update({ payload: stored.payload.slice(0, -8) + "AAAAAAAA" });
  await startAgent();
  const [failed, delivered] = await waitForCommands(panel.db, [bad!.id, good!.id], 20_000);
  const byId = new Map([failed!, delivered!].map((c) => [c.id, c]));
  assert.is(byId.get(bad!.id)!.status, "failed");
  assert.is(byId.get(bad!.id)!.failureCode, "undeliverable");
  assert.match(byId.get(bad!.id)!.result, /^the panel could not deliver this command: /);
  assert.is(byId.get(good!.id)!.status, "succeeded");
});

test("a command created while the agent is offline is delivered when it comes back", async () => {
  await stopAgent();
  const [command] = await createCommands(panel.db, crypto(), { serverIds: [serverId], kind: "resync", createdBy: "test" });
  assert.is((await listCommands(panel.db, { serverId }))[0]!.status, "pending");
  await startAgent();
  const [done] = await waitForCommands(panel.db, [command!.id], 20_000);
  assert.is(done!.status, "succeeded");
});

test("a redelivered command is acknowledged without running twice, also after an agent restart", async () => {
  const [command] = await createCommands(panel.db, crypto(), { serverIds: [serverId], kind: "resync", createdBy: "test" });
  await waitForCommands(panel.db, [command!.id], 20_000);
  // As if the result had been lost: the panel still thinks it is delivered-but-unacknowledged.
  await stopAgent();
  await panel.db("commands").where({ id: command!.id }).update({ status: "delivered", finished_at: null });
  await startAgent();
  const [again] = await waitForCommands(panel.db, [command!.id], 20_000);
  assert.is(again!.status, "succeeded");
  assert.is(again!.attempts, 2, "delivered twice");
  assert.is(lines("delivered again: acknowledged without running it twice"), 1);
  assert.is(lines('"msg":"running command"'), 0, "not run by this (restarted) agent process");
});

test("a command past its deadline expires", async () => {
  await stopAgent();
  const [command] = await createCommands(panel.db, crypto(), { serverIds: [serverId], kind: "resync", createdBy: "test", ttlSeconds: 60 });
  await panel
    .db("commands")
    .where({ id: command!.id })
    .update({ deadline: panel.db.raw("now() - interval '1 second'") });
  assert.ok((await expireCommands(panel.db)) >= 1);
  assert.is((await panel.db("commands").where({ id: command!.id }).first()).status, "expired");
  await startAgent();
});

test("two panel replicas on one database: a command created through replica B reaches the agent on replica A, also after A restarts", async () => {
  const replicaB = await startHost(
    { ...panel.config, panel: { ...panel.config.panel, port: 0 } },
    selectServices(["crypto", "jobs", "agents", "panel"]),
    panel.logs.log,
  );
  try {
    const viaB = () => createClient(CryptoService, replicaB.transportFor(CryptoService));
    const [first] = await createCommands(panel.db, viaB(), { serverIds: [serverId], kind: "resync", createdBy: "replica-b" });
    assert.is((await waitForCommands(panel.db, [first!.id], 20_000))[0]!.status, "succeeded");
    // A goes away; the command waits; A comes back and the agent, reconnected, gets it.
    await panel.pause();
    const [second] = await createCommands(panel.db, viaB(), { serverIds: [serverId], kind: "resync", createdBy: "replica-b" });
    await panel.resume();
    assert.is((await waitForCommands(panel.db, [second!.id], 60_000))[0]!.status, "succeeded");
  } finally {
    await replicaB.stop();
  }
});

test("results: many at once are each recorded, a repeat changes nothing, another server's command is NotFound", async () => {
  const [a, b] = [await panel.enroll("results-a"), await panel.enroll("results-b")];
  const created = await createCommands(panel.db, crypto(), { serverIds: Array.from({ length: 40 }, () => a.id), kind: "resync", createdBy: "test" });
  await Promise.all(
    created.map((c, i) =>
      a.client.reportResult({
        commandId: c.id,
        outcome: i % 2 ? CommandOutcome.FAILED : CommandOutcome.SUCCEEDED,
        failureCode: i % 2 ? "agent_error" : "",
        detail: `result ${i}`,
      }),
    ),
  );
  const stored = new Map(
    (
      await panel
        .db("commands")
        .whereIn(
          "id",
          created.map((c) => c.id),
        )
        .select("id", "status", "result")
    ).map((r) => [r.id, r]),
  );
  created.forEach((c, i) => {
    assert.is(stored.get(c.id)!.status, i % 2 ? "failed" : "succeeded");
    assert.is(stored.get(c.id)!.result, `result ${i}`);
  });
  await a.client.reportResult({ commandId: created[0]!.id, outcome: CommandOutcome.FAILED, detail: "again" });
  assert.is((await panel.db("commands").where({ id: created[0]!.id }).first()).result, "result 0", "a repeated report changes nothing");
  const foreign = await b.client.reportResult({ commandId: created[1]!.id, outcome: CommandOutcome.SUCCEEDED }).catch((e: unknown) => ConnectError.from(e));
  assert.is((foreign as ConnectError).code, Code.NotFound);
});

test("streams woken together are served by one claim: each server's commands in order, its payload opened, a server asked twice served once, what a stream was sent left out", async () => {
  const [a, b] = [await panel.enroll("claim-a"), await panel.enroll("claim-b")];
  const payload = { changes: [{ operation: "ACCOUNT_OPERATION_UPDATE", user: "kitchen", set: [{ key: "description", value: "claimed" }] }] };
  const forA = await createCommands(panel.db, crypto(), { serverIds: [a.id, a.id], instance: "main", kind: "apply_accounts", payload, createdBy: "test" });
  const forB = await createCommands(panel.db, crypto(), { serverIds: [b.id], kind: "resync", createdBy: "test" });
  const [first, second, third] = await claimCommandsFor(panel.db, crypto(), [
    { serverId: a.id, sentOnThisStream: new Set([forA[1]!.id]) },
    { serverId: b.id, sentOnThisStream: new Set() },
    { serverId: a.id, sentOnThisStream: new Set() },
  ]);
  assert.equal(
    first!.map((c) => c.id),
    [forA[0]!.id],
    "what this stream was already sent is left out",
  );
  assert.is(first![0]!.payload.case, "applyAccounts");
  assert.is(first![0]!.payload.case === "applyAccounts" && first![0]!.payload.value.changes[0]!.user, "kitchen");
  assert.equal(
    second!.map((c) => c.id),
    [forB[0]!.id],
  );
  assert.equal(third, [], "the second stream of one server in the same batch gets nothing this time");
  const statuses = await panel
    .db("commands")
    .whereIn(
      "id",
      [...forA, ...forB].map((c) => c.id),
    )
    .select("id", "status", "attempts");
  const byId = new Map(statuses.map((r: { id: string; status: string; attempts: number }) => [r.id, r]));
  assert.is(byId.get(forA[0]!.id)!.status, "delivered");
  assert.is(byId.get(forA[1]!.id)!.status, "pending", "left out, so not claimed");
  assert.is(byId.get(forB[0]!.id)!.attempts, 1);
  // A later claim of server A's stream takes the rest (delivered again: a reconnect sends it again).
  const again = (await claimCommandsFor(panel.db, crypto(), [{ serverId: a.id, sentOnThisStream: new Set([forA[0]!.id]) }]))[0]!;
  assert.equal(
    again.map((c) => c.id),
    [forA[1]!.id],
  );
});

test("a bad kind or payload is refused on the panel before anything is stored", async () => {
  const before = (await listCommands(panel.db)).length;
  const codeOf = (p: Promise<unknown>) =>
    p.then(
      () => "ok",
      (e: unknown) => Code[ConnectError.from(e).code],
    );
  assert.is(await codeOf(createCommands(panel.db, crypto(), { serverIds: [serverId], kind: "format_disk", createdBy: "test" })), "InvalidArgument");
  assert.is(
    await codeOf(createCommands(panel.db, crypto(), { serverIds: [serverId], kind: "resync", payload: { x: 1 }, createdBy: "test" })),
    "InvalidArgument",
  );
  assert.is(
    await codeOf(createCommands(panel.db, crypto(), { serverIds: [serverId], kind: "apply_accounts", payload: { changes: [] }, createdBy: "test" })),
    "InvalidArgument",
  );
  assert.is(
    await codeOf(createCommands(panel.db, crypto(), { serverIds: ["00000000-0000-4000-8000-000000000000"], kind: "resync", createdBy: "test" })),
    "NotFound",
  );
  assert.is((await listCommands(panel.db)).length, before);
});

test.run();
