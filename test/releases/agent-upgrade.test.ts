import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, readdir, readlink, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { createCommands } from "../../services/agents/commands.js";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { uploadRelease } from "../../services/agents/releases.js";
import { generateReleaseKeys } from "../../services/lib/releases/manifest.js";
import { superviseAgent, writeStartWrapper, type AgentSupervisor } from "../helpers/agent-supervisor.js";
import { buildAgent } from "../../bench/lib/build-agent.js";
import { makeTempDir } from "../helpers/cli.js";
import { eventually } from "../helpers/eventually.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";
import { writeRelease } from "../helpers/releases.js";

const test = suite("a real agent upgrades itself from the panel, and falls back when the new version fails");

let panel: PanelHost;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
let supervisor: AgentSupervisor | undefined;
let serverId = "";
const keys = generateReleaseKeys();
const home = () => join(dir.path, "home");
const crypto = () => createClient(CryptoService, panel.host.transportFor(CryptoService));
const current = () => readlink(join(home(), "current"));
/** The environment the agent runs in, as a service has it (not this test's NODE_OPTIONS). */
const agentEnv = () => ({ PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir.path, MYOSICAM_AGENT_HOME: home(), MYOSICAM_AGENT_TRIAL_SECONDS: "60" });

/** Sends an upgrade and waits until the panel has it finished; answers the command row. */
async function upgradeTo(version: string): Promise<{ status: string; failure_code: string; result: string }> {
  const [command] = await createCommands(panel.db, crypto(), { serverIds: [serverId], kind: "upgrade_agent", payload: { version }, createdBy: "test" });
  const row = () => panel.db("commands").where({ id: command!.id }).first();
  return eventually(row, (r) => r.status === "succeeded" || r.status === "failed", `the upgrade to ${version} to finish`, 120_000).catch((err: Error) => {
    throw new Error(`${err.message}\n--- agent ---\n${supervisor?.output().slice(-4000)}`);
  });
}

/** Uploads a release whose executable is a shell script (what a broken build looks like to the wrapper). */
async function uploadScript(version: string, script: string): Promise<void> {
  const release = await writeRelease(join(dir.path, `release-${version}`), { version, executable: Buffer.from(script), keys });
  await uploadRelease(panel.db, release, keys.publicPem, "test");
}

test.before(async () => {
  dir = await makeTempDir("agent-upgrade");
  const publicKey = join(dir.path, "release-public.pem");
  const privateKey = join(dir.path, "release-private.pem");
  await writeFile(publicKey, keys.publicPem);
  await writeFile(privateKey, keys.privatePem, { mode: 0o600 });
  // Version A and version B: the same code, built twice with different version strings.
  buildAgent(join(dir.path, "build-a"), { version: "0.1.0", releaseKeyFile: publicKey });
  buildAgent(join(dir.path, "build-b"), { version: "0.1.1", releaseKeyFile: publicKey, signKeyFile: privateKey });
  panel = await startPanelHost("agent_upgrade", { AGENT_HEARTBEAT_INTERVAL_SECONDS: "1" });
  await panel.setLicense(10);
  await uploadRelease(panel.db, join(dir.path, "build-b"), keys.publicPem, "test");

  // The layout the bootstrap leaves: A in the agent's home, `current` pointing at it.
  await mkdir(join(home(), "versions/0.1.0"), { recursive: true });
  await copyFile(join(dir.path, "build-a/myosicam-agent-linux-x64"), join(home(), "versions/0.1.0/myosicam-agent"));
  await symlink("versions/0.1.0", join(home(), "current"));
  const wrapper = await writeStartWrapper(join(dir.path, "start"));
  const state = join(dir.path, "state");
  const { token } = await createInstallToken(panel.db, { server: "upgrading", createdBy: "test" });
  const register = spawn(
    join(home(), "current/myosicam-agent"),
    ["register", "--panel", panel.url, "--pin", panel.host.tls.fingerprint, "--token-stdin", "--state-dir", state],
    {
      env: agentEnv(),
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  let registerOutput = "";
  register.stdout.on("data", (d: Buffer) => (registerOutput += d));
  register.stderr.on("data", (d: Buffer) => (registerOutput += d));
  register.stdin.end(`${token}\n`);
  const code = await new Promise<number | null>((resolve) => register.once("exit", resolve));
  if (code !== 0) throw new Error(`register failed: ${registerOutput}`);
  serverId = (await panel.db("servers").where({ name: "upgrading" }).first()).id;
  supervisor = superviseAgent({ wrapper, args: ["run", "--state-dir", state], env: agentEnv() });
  await eventually(
    async () => (await panel.db("servers").where({ id: serverId }).first()).agent_version,
    (v) => v === "0.1.0",
    "agent 0.1.0 to heartbeat",
  );
});
test.after(async () => {
  await supervisor?.stop();
  await panel?.stop();
  await dir?.remove();
});

test("0.1.0 upgrades itself to 0.1.1: downloaded over its signed channel, checked, switched, restarted by its supervisor, done on the first heartbeat", async () => {
  const before = supervisor!.starts();
  const command = await upgradeTo("0.1.1");
  assert.is(command.status, "succeeded", `${command.result}\n${supervisor!.output().slice(-3000)}`);
  assert.is((await panel.db("servers").where({ id: serverId }).first()).agent_version, "0.1.1");
  assert.is(await current(), "versions/0.1.1");
  assert.is(await readlink(join(home(), "previous")), "versions/0.1.0");
  await eventually(
    () => readdir(home()),
    (names) => !names.includes("trial"),
    "the trial to end",
  );
  assert.is(supervisor!.starts(), before + 1, "one restart, through the supervisor");
  // The agent removes the trial file and then logs it: wait for the line, not just the file.
  await eventually(
    async () => supervisor!.output(),
    (output) => /upgrade confirmed: this version heartbeats/.test(output),
    "the new version to log that it confirmed its upgrade",
  );
  assert.not.ok(supervisor!.output().includes(keys.privatePem.slice(40, 80)));
});

test("a tampered, re-signed-by-nobody or truncated release is refused and reported; nothing is switched", async () => {
  await uploadScript("0.1.2", "#!/bin/sh\nexit 0\n");
  await panel.db.raw("update agent_release_chunks set data = overlay(data placing '\\xff'::bytea from 10) where version = '0.1.2'");
  const flipped = await upgradeTo("0.1.2");
  assert.is(flipped.status, "failed");
  assert.ok(["release_truncated", "release_checksum_mismatch"].includes(flipped.failure_code), flipped.failure_code);

  await uploadScript("0.1.3", "#!/bin/sh\nexit 0\n");
  await panel
    .db("agent_releases")
    .where({ version: "0.1.3" })
    .update({ manifest: panel.db.raw("replace(manifest, '\"size\"', '\"size\" ')") });
  const resigned = await upgradeTo("0.1.3");
  assert.equal([resigned.status, resigned.failure_code], ["failed", "release_signature_invalid"], resigned.result);
  assert.match(resigned.result, new RegExp(`not signed by release key ${keys.keyId}`));

  // Random content does not compress: the release spans several stored chunks, and only the first is kept.
  await uploadScript("0.1.4", `#!/bin/sh\n# ${randomBytes(3 << 20).toString("base64")}\nexit 0\n`);
  await panel.db("agent_release_chunks").where({ version: "0.1.4" }).where("seq", ">", 0).delete();
  const truncated = await upgradeTo("0.1.4");
  assert.equal([truncated.status, truncated.failure_code], ["failed", "release_truncated"], truncated.result);

  assert.is(await current(), "versions/0.1.1", "still the version that runs");
  for (const v of ["0.1.2", "0.1.3", "0.1.4"]) {
    const files = await readdir(join(home(), "versions", v)).catch(() => [] as string[]);
    assert.equal(files, [], `nothing of ${v} is left`);
  }
});

test("a new version that exits on start is rolled back after 3 starts; the previous one reports upgrade_rolled_back with the reason", async () => {
  await uploadScript("0.1.5", "#!/bin/sh\necho 'broken build' >&2\nexit 1\n");
  const command = await upgradeTo("0.1.5");
  assert.equal([command.status, command.failure_code], ["failed", "upgrade_rolled_back"], command.result);
  assert.match(command.result, /agent 0\.1\.5 was rolled back to 0\.1\.1: it exited on start 3 times/);
  assert.is(await current(), "versions/0.1.1");
  assert.match(supervisor!.output(), /myosicam-agent-start: rolled back to 0\.1\.1: it exited on start 3 times/);
  assert.is((await readdir(home())).includes("rolled-back"), false, "the record is gone once reported");
});

test("a new version that never heartbeats is rolled back when its trial time is up", async () => {
  await uploadScript("0.1.6", "#!/bin/sh\nexec sleep 600\n");
  supervisor!.setEnv({ MYOSICAM_AGENT_TRIAL_SECONDS: "4" });
  const command = await upgradeTo("0.1.6");
  supervisor!.setEnv({ MYOSICAM_AGENT_TRIAL_SECONDS: "60" });
  assert.equal([command.status, command.failure_code], ["failed", "upgrade_rolled_back"], command.result);
  assert.match(command.result, /rolled back to 0\.1\.1: it did not heartbeat within 4 s/);
  assert.is(await current(), "versions/0.1.1");
  assert.is((await panel.db("servers").where({ id: serverId }).first()).agent_version, "0.1.1");
});

test.run();
