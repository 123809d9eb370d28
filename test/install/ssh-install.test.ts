import { execFile, execFileSync, spawnSync } from "node:child_process";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { InstallerService, RootMethod } from "../../gen/myosicam/install/v1/install_pb.js";
import { JobService, JobState } from "../../gen/myosicam/jobs/v1/jobs_pb.js";
import { addSavedServer, findSavedServer, forgetHostKey } from "../../services/install/saved-servers.js";
import { makeTempDir, runCli } from "../helpers/cli.js";
import { eventually } from "../helpers/eventually.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";
import { startSshd, type Sshd } from "../helpers/sshd.js";
import { startTcpRelay, type TcpRelay } from "../helpers/tcp-relay.js";
import { buildAgent } from "../../bench/lib/build-agent.js";

const test = suite("installing the agent over real SSH: key and password, root and sudo, failures named by their step");

const repo = resolve(import.meta.dirname, "../..");
const testUser = "myosicam-installtest";
const testPassword = "It-Pw-7c1e9a";
const noSystemdMarker = "/etc/myosicam-agent.no-systemd";
let panel: PanelHost;
let sshd: Sshd;
let relay: TcpRelay;
let dir: Awaited<ReturnType<typeof makeTempDir>>;

const crypto = () => createClient(CryptoService, panel.host.transportFor(CryptoService));
const installer = () => createClient(InstallerService, panel.host.transportFor(InstallerService));
const jobs = () => createClient(JobService, panel.host.transportFor(JobService));

const save = (name: string, auth: { password: string } | { privateKey: string }, user = "root") =>
  addSavedServer(panel.db, crypto(), {
    name,
    host: "127.0.0.1",
    port: relay.port,
    username: user,
    authKind: "password" in auth ? "password" : "private_key",
    credential: "password" in auth ? auth.password : auth.privateKey,
    createdBy: "test",
  });

/** Runs an install and follows it through JobService.Watch; `onStep` sees each step as it starts. */
async function install(server: string, root: RootMethod, onStep?: (step: string) => void) {
  const { jobId } = await installer().startInstall({ server, root, requestedBy: "test", waitSeconds: 60 });
  const steps: string[] = [];
  const lines: string[] = [];
  let job;
  for await (const res of jobs().watch({ id: jobId })) {
    if (res.update.case === "job") job = res.update.value;
    else if (res.update.case === "event") {
      const event = res.update.value.event;
      if (event.case === "progress") {
        steps.push(event.value.step);
        onStep?.(event.value.step);
      } else if (event.case === "logLine") lines.push(event.value);
    }
  }
  return { job: job!, steps, lines };
}

test.before(async () => {
  try {
    await setUp();
  } catch (err) {
    // uvu reports a failing hook poorly: say what failed.
    console.error("setting up the installer tests failed:", err);
    throw err;
  }
});

async function setUp() {
  if (process.getuid?.() !== 0)
    throw new Error("the installer tests need root (they create users and run the bootstrap): run them as CI does, through .ci/run");
  dir = await makeTempDir("install");
  const artifacts = join(dir.path, "artifacts");
  buildAgent(artifacts);
  panel = await startPanelHost("install_ssh", { AGENT_HEARTBEAT_INTERVAL_SECONDS: "1", AGENT_ARTIFACT_DIR: artifacts });
  await panel.setLicense(10, 10);
  sshd = await startSshd(join(dir.path, "sshd"));
  relay = await startTcpRelay(sshd.port);
  // A run that was killed may have left its user behind.
  spawnSync("userdel", ["--remove", testUser], { stdio: "ignore" });
  execFileSync("useradd", ["--create-home", "--shell", "/bin/sh", testUser]);
  execFileSync("chpasswd", { input: `${testUser}:${testPassword}\n` });
  await writeFile(`/etc/sudoers.d/${testUser}`, `${testUser} ALL=(ALL) ALL\n`, { mode: 0o440 });
  // This test host has no systemd: the bootstrap runs the agent without a unit.
  await writeFile(noSystemdMarker, "");
}

test.after(async () => {
  execFileSync("sh", [join(repo, "deploy/uninstall.sh")], { stdio: "ignore" });
  await rm(noSystemdMarker, { force: true });
  await rm(`/etc/sudoers.d/${testUser}`, { force: true });
  try {
    execFileSync("userdel", ["--remove", testUser], { stdio: "ignore" });
  } catch {
    // already gone
  }
  await relay?.stop();
  await sshd?.stop();
  await panel?.stop();
  await dir?.remove();
});

test("key auth as root: the host key is pinned, the agent downloaded, registered and heartbeating; every step streams through JobService.Watch", async () => {
  await save("key-root", { privateKey: sshd.clientKey });
  const bootstraps = async () => (await readdir("/tmp")).filter((f) => f.startsWith("myosicam-bootstrap."));
  const before = await bootstraps();
  const { job, steps, lines } = await install("key-root", RootMethod.DIRECT);
  assert.is(job.state, JobState.SUCCEEDED, `${job.error}\n${lines.join("\n")}`);
  assert.equal(
    steps.filter((s) => s !== "done"),
    [
      "connect",
      "host key",
      "install token",
      "upload",
      "root",
      "check system",
      "download agent",
      "create user",
      "install agent",
      "install unit",
      "sudoers",
      "register",
      "start",
      "registered",
    ],
  );
  assert.is((await findSavedServer(panel.db, "key-root")).hostKeyFingerprint, sshd.fingerprint, "pinned on first use");
  const server = await panel.db("servers").where({ name: "key-root" }).first();
  assert.ok(server.last_seen_at, "a heartbeat arrived");
  assert.ok(await panel.db("download_attempts").where({ outcome: "accepted" }).first(), "the artifact was downloaded through the gated endpoint");
  assert.not.match(lines.join("\n"), /[0-9a-f]{64}/, "no install token in the job's output");
  assert.not.match(panel.logs.text(), /[0-9a-f]{64}/, "no install token in the panel's log");
  assert.equal(
    (await bootstraps()).filter((f) => !before.includes(f)),
    [],
    "the bootstrap (it held the token) and its work dir are gone",
  );
  const rule = (text: string) => text.split("\n").filter((l) => l.startsWith("myosicam-agent "));
  assert.equal(
    rule(await readFile("/etc/sudoers.d/myosicam-agent", "utf8")),
    rule(await readFile(join(repo, "deploy/sudoers.d/myosicam-agent"), "utf8")),
    "the narrow rule of deploy/ is what got installed",
  );
});

test("without systemd the bootstrap's restart loop starts an agent that died again (as Restart=always would), and it heartbeats", async () => {
  const agentPids = () => spawnSync("pgrep", ["-u", "myosicam-agent", "-f", "current/myosicam-agent run"], { encoding: "utf8" }).stdout.trim();
  const before = agentPids();
  assert.ok(/^\d+$/.test(before), `one agent process runs after the install (pgrep: '${before}')`);
  const loop = Number(await readFile("/run/myosicam-agent.pid", "utf8"));
  assert.ok(spawnSync("ps", ["-o", "pid=", "-g", String(loop)], { encoding: "utf8" }).stdout.includes(before), "the agent runs in the pid file's session");
  const killedAt = new Date();
  process.kill(Number(before), "SIGKILL");
  const after = await eventually(
    async () => agentPids(),
    (pids) => /^\d+$/.test(pids) && pids !== before,
    "a new agent process after the kill",
    30_000,
  );
  assert.not.equal(after, before);
  await eventually(
    () => panel.db("servers").where({ name: "key-root" }).first(),
    (server) => server.last_seen_at > killedAt,
    "a heartbeat from the restarted agent",
    30_000,
  );
});

test("password and sudo -S: running the bootstrap again replaces the agent's token and restarts it", async () => {
  await save("pw-sudo", { password: testPassword }, testUser);
  const { job, lines } = await install("pw-sudo", RootMethod.SUDO_PASSWORD);
  assert.is(job.state, JobState.SUCCEEDED, `${job.error}\n${lines.join("\n")}`);
  assert.ok(
    lines.some((l) => l.includes(`user myosicam-agent exists`)),
    "the second run found what the first installed",
  );
  assert.not.ok(lines.join("\n").includes(testPassword), "the sudo password is never echoed");
  const server = await panel.db("servers").where({ name: "pw-sudo" }).first();
  assert.ok(server.last_seen_at, "the restarted agent heartbeats with its new registration");
});

test("a wrong password fails at connect after one attempt: no retry storm", async () => {
  await save("wrong-pw", { password: "not-the-password" }, testUser);
  const before = sshd.log().split("Failed password").length;
  const { job } = await install("wrong-pw", RootMethod.SUDO_PASSWORD);
  assert.is(job.state, JobState.FAILED);
  assert.match(job.error, /^connect: authentication failed for myosicam-installtest@127\.0\.0\.1:\d+ with the saved password/);
  assert.is(job.attempts, 1, "the job is not retried");
  assert.is(sshd.log().split("Failed password").length - before, 1, "one password attempt reached sshd");
});

test("a changed host key is refused before anything is sent, naming both fingerprints", async () => {
  const saved = await findSavedServer(panel.db, "key-root");
  const bogus = "SHA256:" + "A".repeat(43);
  await panel.db("saved_servers").where({ id: saved.id }).update({ host_key_fingerprint: bogus });
  const { job } = await install("key-root", RootMethod.DIRECT);
  assert.is(job.state, JobState.FAILED);
  assert.ok(job.error.startsWith("host key: the host key of 127.0.0.1"), job.error);
  assert.ok(job.error.includes(`pinned ${bogus}, offered ${sshd.fingerprint}`), job.error);
  await forgetHostKey(panel.db, saved.id);
});

test("a host without systemd is detected by the bootstrap, which says what to do (started and followed from the CLI)", async () => {
  await rm(noSystemdMarker);
  try {
    const run = runCli(["server", "install", "key-root", "--root", "direct", "--follow", "--json"], {
      DATABASE_URL: panel.config.databaseUrl!,
      PANEL_ENCRYPTION_KEY: panel.config.encryptionKeyHex!,
      MYOSICAM_DATA_DIR: panel.config.dataDir,
      LOG_LEVEL: "warn",
    });
    assert.is(await run.exited, 1, run.stderr());
    const result = JSON.parse(run.stdout()) as { jobId: string; state: string; error: string };
    assert.is(result.state, "failed");
    assert.match(result.error, /^check system: systemd is not running on this host/);
  } finally {
    await writeFile(noSystemdMarker, "");
  }
});

test("the network cut in the middle of an install fails the job, naming the step it was in", async () => {
  let cutAt = "";
  const { job } = await install("key-root", RootMethod.DIRECT, (step) => {
    if (step === "download agent" && !cutAt) {
      cutAt = step;
      relay.cut();
    }
  });
  assert.is(cutAt, "download agent");
  assert.is(job.state, JobState.FAILED);
  assert.match(job.error, /^(download agent|create user|install agent): .*(connection|lost|closed)/i);
});

test("sudo -n where sudo wants a password fails at the root step with sudo's own words", async () => {
  const { job } = await install("pw-sudo", RootMethod.SUDO_NOPASSWD);
  assert.is(job.state, JobState.FAILED);
  assert.match(job.error, /^root: sudo refused: sudo: a password is required/);
});

test("the bootstrap by hand: the values in the environment, the token on stdin, as `token create` prints it", async () => {
  const run = runCli(["token", "create", "--server", "by-hand", "--json"], {
    DATABASE_URL: panel.config.databaseUrl!,
    PANEL_ENCRYPTION_KEY: panel.config.encryptionKeyHex!,
    MYOSICAM_DATA_DIR: panel.config.dataDir,
    PANEL_PUBLIC_URL: panel.url,
    LOG_LEVEL: "warn",
  });
  assert.is(await run.exited, 0, run.stderr());
  const { command } = JSON.parse(run.stdout()) as { command: string };
  // Not spawnSync: the panel serving the download runs in this process.
  const bootstrap = await new Promise<{ code: number | null; out: string }>((resolve) => {
    execFile("sh", ["-c", command], { cwd: join(repo, "deploy") }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
  assert.is(bootstrap.code, 0, bootstrap.out);
  assert.match(bootstrap.out, /==> register[\s\S]*==> start[\s\S]*done/);
  const deadline = Date.now() + 30_000;
  let server;
  while (!(server = await panel.db("servers").where({ name: "by-hand" }).whereNotNull("last_seen_at").first()) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 200));
  assert.ok(server, "the agent registered and heartbeats");
});

test("uninstall over SSH (sudo -S) removes every trace from the host and revokes the agent on the panel", async () => {
  const { jobId } = await installer().startUninstall({ server: "pw-sudo", root: RootMethod.SUDO_PASSWORD, requestedBy: "test" });
  let job;
  const lines: string[] = [];
  for await (const res of jobs().watch({ id: jobId })) {
    if (res.update.case === "job") job = res.update.value;
    else if (res.update.case === "event" && res.update.value.event.case === "logLine") lines.push(res.update.value.event.value);
  }
  assert.is(job!.state, JobState.SUCCEEDED, `${job!.error}\n${lines.join("\n")}`);
  const gone = async (path: string) =>
    readFile(path).then(
      () => false,
      (e: NodeJS.ErrnoException) => e.code === "ENOENT" || e.code === "EISDIR",
    );
  for (const path of [
    "/usr/local/bin/myosicam-agent",
    "/usr/local/lib/myosicam-agent/start",
    "/var/lib/myosicam-agent/current",
    "/etc/sudoers.d/myosicam-agent",
    "/etc/myosicam-agent/agent.json",
    "/etc/systemd/system/myosicam-agent.service",
  ]) {
    assert.ok(await gone(path), `${path} is removed`);
  }
  assert.throws(() => execFileSync("id", ["myosicam-agent"], { stdio: "ignore" }), /Command failed/, "the user is removed");
  assert.is((await panel.db("servers").where({ name: "pw-sudo" }).first()).status, "revoked");
});

test("an unknown saved server and a bad request are refused with words", async () => {
  const unknown = await installer()
    .startInstall({ server: "nope", root: RootMethod.DIRECT, requestedBy: "test" })
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((unknown as ConnectError).code, Code.NotFound);
  const bad = await installer()
    .startInstall({ server: "key-root", root: RootMethod.UNSPECIFIED, requestedBy: "test" })
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((bad as ConnectError).code, Code.InvalidArgument);
});

test.run();
