import { cp, readdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { createCommands, waitForCommands } from "../../services/agents/commands.js";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { makeTempDir, runAgentCli, type CliProcess } from "../helpers/cli.js";
import { eventually } from "../helpers/eventually.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";
import { startOscamEmulator, type OscamEmulator } from "../oscam-emulator/emulator.js";

const fixtures = resolve(import.meta.dirname, "../fixtures/oscam");
const test = suite("apply_accounts end to end: panel → agent → oscam.user → OScam reloaded → result → resync");

let panel: PanelHost;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
let agent: CliProcess;
let emulator: OscamEmulator;
let serverId: string;
const configDir = () => join(dir.path, "oscam/main");
const userFile = () => join(configDir(), "oscam.user");
const send = async (payload: unknown, kind = "apply_accounts") => {
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));
  const [command] = await createCommands(panel.db, crypto, { serverIds: [serverId], instance: "main", kind, payload: payload as never, createdBy: "test" });
  return (await waitForCommands(panel.db, [command!.id], 20_000))[0]!;
};

test.before(async () => {
  dir = await makeTempDir("apply_accounts");
  await cp(join(fixtures, "main"), configDir(), { recursive: true });
  emulator = await startOscamEmulator({ configDir: configDir(), user: "admin", password: "dev-webif-Pw!main-7f3c" });
  const conf = join(configDir(), "oscam.conf");
  await writeFile(conf, (await readFile(conf, "utf8")).replace(/^(httpport\s*=\s*)\d+/m, `$1${emulator.port}`));
  panel = await startPanelHost("agents_apply", { AGENT_HEARTBEAT_INTERVAL_SECONDS: "1" });
  await panel.setLicense(10, 10);
  const { token } = await createInstallToken(panel.db, { server: "apply-1", createdBy: "test" });
  const reg = runAgentCli(
    [
      "register",
      "--panel",
      panel.url,
      "--pin",
      panel.host.tls.fingerprint,
      "--token-stdin",
      "--oscam-dir",
      configDir(),
      "--state-dir",
      join(dir.path, "state"),
    ],
    {},
    token,
  );
  assert.is(await reg.exited, 0, reg.stderr());
  serverId = (await panel.db("servers").where({ name: "apply-1" }).first()).id;
  agent = runAgentCli(["run", "--state-dir", join(dir.path, "state"), "--unit-dir", join(dir.path, "no-units")], {});
  await agent.waitForStderr(/"msg":"command stream open"/);
  await agent.waitForStderr(/"msg":"synced with the panel"/);
});
test.after(async () => {
  if (agent.child.exitCode === null) agent.child.kill("SIGKILL");
  await panel.stop();
  await emulator.stop();
  await dir.remove();
});

test("reload asks OScam to re-read oscam.user, with nothing written", async () => {
  const before = emulator.reloads();
  const bytes = await readFile(userFile());
  const done = await send(undefined, "reload");
  assert.is(done.status, "succeeded", `${done.failureCode}: ${done.result}`);
  assert.is(done.result, "OScam re-read oscam.user");
  assert.is(emulator.reloads(), before + 1);
  assert.ok((await readFile(userFile())).equals(bytes));
});

test("add, disable and delete: only those lines change, OScam reloads, the panel sees it after the resync", async () => {
  const before = await readFile(userFile(), "utf8");
  const done = await send({
    changes: [
      {
        operation: "ACCOUNT_OPERATION_ADD",
        user: "newbox",
        set: [
          { key: "pwd", value: "nb-Secret-1" },
          { key: "group", value: "1" },
        ],
      },
      { operation: "ACCOUNT_OPERATION_DISABLE", user: "bedroom" },
      { operation: "ACCOUNT_OPERATION_DELETE", user: "kitchen_vu" },
    ],
  });
  assert.is(done.status, "succeeded", `${done.failureCode}: ${done.result}`);
  assert.match(done.result, /reloaded by OScam/);
  const after = await readFile(userFile(), "utf8");
  assert.not.ok(after.includes("kitchen_vu"));
  assert.ok(after.includes("user                          = newbox"));
  assert.ok(
    after.startsWith(before.slice(0, before.indexOf("[account]\nuser                          = bedroom"))),
    "everything before the first touched account is untouched",
  );
  // What "OScam" loaded on the reload.
  const loaded = new Map(emulator.loaded().map((a) => [a.user, a]));
  assert.ok(loaded.has("newbox"));
  assert.not.ok(loaded.has("kitchen_vu"));
  assert.ok(loaded.get("bedroom")!.disabled);
  assert.ok(
    emulator.paths().every((p) => !/part=userconfig|files\.html/.test(p)),
    "no WebIF call that returns secrets",
  );
  // The resync shows it on the panel.
  const shown = (rows: Array<{ username: string; enabled: boolean }>) => JSON.stringify(rows.map((r) => [r.username, r.enabled]));
  await eventually(
    () => panel.db("accounts").whereIn("username", ["newbox", "kitchen_vu", "bedroom"]).orderBy("username").select("username", "enabled"),
    (rows) =>
      shown(rows) ===
      shown([
        { username: "bedroom", enabled: false },
        { username: "newbox", enabled: true },
      ]),
    "the resync: newbox added, bedroom disabled, kitchen_vu gone",
  );
  assert.ok(
    (await readdir(join(configDir(), ".myosicam-backups"))).some((f) => f.startsWith("oscam.user.")),
    "the previous version is kept",
  );
});

test("the panel restarting while the agent applies: the agent reconnects, the result arrives, and the change is applied once", async () => {
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));
  const reloadsBefore = emulator.reloads();
  const hold = emulator.holdNextReload();
  const [command] = await createCommands(panel.db, crypto, {
    serverIds: [serverId],
    instance: "main",
    kind: "apply_accounts",
    payload: { changes: [{ operation: "ACCOUNT_OPERATION_ADD", user: "restartbox", set: [{ key: "pwd", value: "rb-Secret-1" }] }] },
    createdBy: "test",
  });
  await hold.reached; // oscam.user is written; OScam has not answered the reload yet
  await panel.pause();
  hold.release();
  await agent.waitForStderr(/"msg":"command stream broken; reconnecting with backoff"/);
  await panel.resume();
  const [done] = await waitForCommands(panel.db, [command!.id], 30_000);
  assert.is(done!.status, "succeeded", `${done!.failureCode}: ${done!.result}`);
  assert.is(emulator.reloads(), reloadsBefore + 1, "applied and reloaded once, not again on redelivery");
  assert.is((await readFile(userFile(), "utf8")).split("= restartbox\n").length - 1, 1, "the account is in the file once");
  assert.ok(emulator.loaded().some((a) => a.user === "restartbox"));
});

test("a change a running OScam cannot be told about is reported precisely and the previous file put back; with no OScam running the file keeps it", async () => {
  emulator.setCredentials("admin", "another-password");
  const before = await readFile(userFile());
  const auth = await send({ changes: [{ operation: "ACCOUNT_OPERATION_ENABLE", user: "bedroom" }] });
  assert.equal([auth.status, auth.failureCode], ["failed", "webif_auth_failed"]);
  assert.match(auth.result, /oscam\.user written.*refused httpuser\/httppwd.*previous oscam\.user was put back, and OScam did not reload that either/);
  assert.ok((await readFile(userFile())).equals(before), "the file OScam last loaded is back");
  await emulator.stop();
  const down = await send({ changes: [{ operation: "ACCOUNT_OPERATION_ENABLE", user: "bedroom" }] });
  assert.equal([down.status, down.failureCode], ["failed", "file_written_reload_failed"]);
  assert.match(down.result, /OScam is not running \(the WebIF .* cannot be reached .*\); it reads oscam\.user when it starts/);
  assert.not.ok((await readFile(userFile())).equals(before), "with no OScam running, the change stays in the file for its next start");
});

test("an edit the file model refuses is validation_failed, and the file is untouched", async () => {
  const before = await readFile(userFile());
  const bad = await send({ changes: [{ operation: "ACCOUNT_OPERATION_DELETE", user: "ghost" }] });
  assert.equal([bad.status, bad.failureCode], ["failed", "validation_failed"]);
  assert.match(bad.result, /no account "ghost"/);
  assert.ok((await readFile(userFile())).equals(before));
});

test("apply_config sets and unsets keys in their sections and reports that they need a restart", async () => {
  const conf = join(configDir(), "oscam.conf");
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));
  const [command] = await createCommands(panel.db, crypto, {
    serverIds: [serverId],
    instance: "main",
    kind: "apply_config",
    payload: {
      changes: [
        { section: "webif", key: "httprefresh", set: "30" },
        { section: "global", key: "nice", unset: true },
      ],
    },
    createdBy: "test",
  });
  const [done] = await waitForCommands(panel.db, [command!.id], 20_000);
  assert.is(done!.status, "succeeded", `${done!.failureCode}: ${done!.result}`);
  const row = await panel.db("commands").where({ id: command!.id }).first();
  assert.equal(row.restart_required_keys, ["webif.httprefresh", "global.nice"]);
  const text = await readFile(conf, "utf8");
  assert.match(text, /^httprefresh\s+= 30$/m);
  assert.not.match(text, /^nice\s*=/m);
});

test.run();
