import { execFile } from "node:child_process";
import { readdir, readFile, rename, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { create } from "@bufbuild/protobuf";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { applyAccounts } from "../../agent/apply/apply-accounts.js";
import { backupDirName } from "../../agent/apply/config-file.js";
import type { DiscoveredInstance } from "../../agent/discovery/discover.js";
import { AccountOperation, ApplyAccountsSchema } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { type CliProcess, makeTempDir, runAgentCli } from "../helpers/cli.js";
import { eventually } from "../helpers/eventually.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";
import { startOscamEmulator } from "../oscam-emulator/emulator.js";

/**
 * Faults on the agent's side: a full disk under oscam.user, the file replaced by someone else
 * between the sync and the apply, a WebIF that never answers the reload, and the host's clock
 * 10 minutes off (through libfaketime, Debian's faketime package).
 */
const test = suite("agent-side faults: full disk, a file replaced under it, a hung WebIF, a wrong clock");

const run = promisify(execFile);
let dir: Awaited<ReturnType<typeof makeTempDir>>;

test.before(async () => {
  dir = await makeTempDir("agent_faults");
});
test.after(async () => {
  await dir.remove();
});

const instanceAt = (configDir: string, webif: DiscoveredInstance["webif"], running = true): DiscoveredInstance => ({
  name: "main",
  configDir,
  tempDir: dir.path,
  pidFile: join(dir.path, "oscam.pid"),
  sources: ["configured"],
  files: { conf: true, user: true, server: false },
  running,
  pid: running ? 100 : undefined,
  webif,
  problems: [],
});
const accounts = (n: number, pad = "") =>
  Array.from({ length: n }, (_, i) => `[account]\nuser = user${i}\npwd = secret${i}\ngroup = 1\ndescription = ${pad}\n\n`).join("");

test("disk full while writing oscam.user: the old file is intact, the failure says 'no space left', nothing half-written remains", async () => {
  if (process.getuid?.() !== 0) {
    console.log("SKIP: mounting a small tmpfs needs root (CI runs as root)");
    return;
  }
  const mount = join(dir.path, "full");
  await mkdir(mount);
  await run("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mount]);
  try {
    await writeFile(join(mount, "oscam.conf"), "[global]\nnice = -1\n");
    const before = accounts(300, "x".repeat(60));
    await writeFile(join(mount, "oscam.user"), before);
    const outcome = await applyAccounts(
      instanceAt(mount, { enabled: false, host: "127.0.0.1", port: 0, ssl: false }),
      create(ApplyAccountsSchema, { changes: [{ operation: AccountOperation.DISABLE, user: "user1" }] }),
    );
    assert.is(outcome.succeeded, false);
    assert.is(outcome.failureCode, "file_write_failed");
    assert.match(outcome.detail, /no space left on the device, ENOSPC\); it is unchanged/);
    assert.is(await readFile(join(mount, "oscam.user"), "utf8"), before, "the old file is intact");
    const leftovers = (await readdir(mount)).filter((f) => f.endsWith(".tmp"));
    const backups = await readdir(join(mount, backupDirName)).catch(() => [] as string[]);
    assert.equal(leftovers, [], "no temp file remains");
    assert.equal(backups, [], "no cut-short backup copy remains");
    console.log(`faults: disk full: ${outcome.detail.replace(mount, "<tmpfs>")}`);
  } finally {
    await run("umount", [mount]);
  }
});

test("oscam.user replaced by someone else between sync and apply: only the targeted lines change", async () => {
  const configDir = join(dir.path, "replaced");
  await mkdir(configDir);
  await writeFile(join(configDir, "oscam.conf"), "[global]\nnice = -1\n");
  await writeFile(join(configDir, "oscam.user"), accounts(3));
  // What the panel saw at its sync: user0..user2. Then someone rewrote the file (an editor's
  // save: a new file renamed over), with other changes of their own.
  const theirs = `# edited by hand\n${accounts(3).replace("pwd = secret2", "pwd = changed-by-hand")}[account]\nuser = added-by-hand\npwd = h\n`;
  await writeFile(join(configDir, "oscam.user.new"), theirs);
  await rename(join(configDir, "oscam.user.new"), join(configDir, "oscam.user"));
  const outcome = await applyAccounts(
    instanceAt(configDir, { enabled: false, host: "127.0.0.1", port: 0, ssl: false }, false),
    create(ApplyAccountsSchema, { changes: [{ operation: AccountOperation.UPDATE, user: "user1", set: [{ key: "group", value: "7" }] }] }),
  );
  assert.is(outcome.failureCode, "file_written_reload_failed", outcome.detail);
  const after = await readFile(join(configDir, "oscam.user"), "utf8");
  assert.is(after, theirs.replace("user = user1\npwd = secret1\ngroup = 1", "user = user1\npwd = secret1\ngroup = 7"), "their edits kept, one line changed");
});

test("a WebIF that hangs on reload: bounded by the timeout, reported, and the previous file put back", async () => {
  const configDir = join(dir.path, "hung");
  await mkdir(configDir);
  const emulator = await startOscamEmulator({ configDir, user: "admin", password: "webif-pass" });
  try {
    await writeFile(join(configDir, "oscam.conf"), `[webif]\nhttpport = ${emulator.port}\nhttpuser = admin\nhttppwd = webif-pass\n`);
    const before = accounts(3);
    await writeFile(join(configDir, "oscam.user"), before);
    emulator.hangNextReloads(1);
    const started = performance.now();
    const outcome = await applyAccounts(
      instanceAt(configDir, { enabled: true, host: "127.0.0.1", port: emulator.port, ssl: false }),
      create(ApplyAccountsSchema, { changes: [{ operation: AccountOperation.DISABLE, user: "user0" }] }),
    );
    const seconds = (performance.now() - started) / 1000;
    assert.is(outcome.failureCode, "reload_failed_rolled_back", outcome.detail);
    assert.match(outcome.detail, /no answer within 10 s/);
    assert.is(await readFile(join(configDir, "oscam.user"), "utf8"), before, "the previous file is back");
    assert.is(emulator.reloads(), 1, "OScam reloaded the previous file");
    assert.ok(seconds < 20, `bounded: ${seconds.toFixed(1)} s`);
    console.log(`faults: hung WebIF: ${outcome.failureCode} after ${seconds.toFixed(1)} s`);
  } finally {
    await emulator.stop();
  }
});

/** libfaketime's library, when Debian's faketime package is installed. */
async function libfaketime(): Promise<string | undefined> {
  for (const arch of ["x86_64-linux-gnu", "aarch64-linux-gnu"]) {
    const path = `/usr/lib/${arch}/faketime/libfaketime.so.1`;
    if (
      await readFile(path).then(
        () => true,
        () => false,
      )
    )
      return path;
  }
  return undefined;
}

test("the agent's clock 10 minutes behind: refused for clock skew (its log and the panel's refusal table say so), retried, recovered once the clock is right", async () => {
  const library = await libfaketime();
  if (!library) {
    console.log("SKIP: libfaketime is not installed (Debian package faketime; .ci/run installs it)");
    return;
  }
  let panel: PanelHost | undefined;
  let agent: CliProcess | undefined;
  try {
    panel = await startPanelHost("agent_clock", { AGENT_HEARTBEAT_INTERVAL_SECONDS: "1" });
    await panel.setLicense(10, 10);
    const stateDir = join(dir.path, "clock-state");
    const { token } = await createInstallToken(panel.db, { server: "clock-1", createdBy: "test" });
    const reg = runAgentCli(["register", "--panel", panel.url, "--pin", panel.host.tls.fingerprint, "--token-stdin", "--state-dir", stateDir], {}, token);
    assert.is(await reg.exited, 0, reg.stderr());
    const serverId = (await panel.db("servers").where({ name: "clock-1" }).first()).id as string;
    // libfaketime reads the offset from this file at every call: the clock can be put right while the agent runs.
    const offsetFile = join(dir.path, "faketime");
    await writeFile(offsetFile, "-10m\n");
    const fakeClock = { LD_PRELOAD: library, FAKETIME_TIMESTAMP_FILE: offsetFile, FAKETIME_NO_CACHE: "1", FAKETIME_DONT_FAKE_MONOTONIC: "1" };
    agent = runAgentCli(["run", "--state-dir", stateDir, "--unit-dir", join(dir.path, "no-units")], fakeClock);
    const a = agent;
    const line = await a.waitForStderr(/"msg":"the panel refuses this agent's signed calls: this host's clock is \d+ s behind the panel's[^"]*"/, 60_000);
    const skew = Number(/clock is (\d+) s behind/.exec(line)![1]);
    assert.ok(skew >= 590 && skew <= 610, `the agent names a skew of about 600 s (${skew})`);
    const refusal = await eventually(
      () => panel!.db("hmac_refusals").where({ caller_id: serverId }).orderBy("id", "desc").first(),
      (r) => r !== undefined,
      "the panel's refusal row",
    );
    assert.is(refusal.reason, "skew");
    assert.not.match(a.stderr(), /refused the agent token/, "not mistaken for a refused token");
    await writeFile(offsetFile, "+0\n");
    await a.waitForStderr(/"msg":"connected to the panel"/, 60_000);
    console.log(`faults: agent clock 600 s behind: refused as skew (logged: ${skew} s), recovered once the clock was right`);

    // Two days behind, the panel's certificate is not valid yet by this host's clock: said so, not "unreachable".
    a.child.kill("SIGTERM");
    await a.exited;
    await writeFile(offsetFile, "-2d\n");
    agent = runAgentCli(["run", "--state-dir", stateDir, "--unit-dir", join(dir.path, "no-units")], fakeClock);
    await agent.waitForStderr(/"msg":"the panel's certificate is not yet valid by this host's clock: the clock is probably behind[^"]*"/, 60_000);
  } finally {
    if (agent && agent.child.exitCode === null) agent.child.kill("SIGKILL");
    await panel?.stop();
  }
});

test.run();
