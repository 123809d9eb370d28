import { execFileSync } from "node:child_process";
import { chmod, cp, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { createCommands, waitForCommands } from "../../services/agents/commands.js";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { makeTempDir, runAgentCli, type CliProcess } from "../helpers/cli.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const repo = resolve(import.meta.dirname, "../..");
const fixtures = resolve(import.meta.dirname, "../fixtures/oscam");
const test = suite("start, stop and restart through systemd (a stand-in systemctl), the state checked afterwards");

let panel: PanelHost;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
let agent: CliProcess;
let serverId: string;
const pidFile = () => join(dir.path, "run/oscam-main.pid");
const send = async (kind: string) => {
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));
  const [command] = await createCommands(panel.db, crypto, { serverIds: [serverId], instance: "main", kind, createdBy: "test" });
  return (await waitForCommands(panel.db, [command!.id], 30_000))[0]!;
};
const currentPid = async () => Number((await readFile(pidFile(), "utf8").catch(() => "")).trim()) || undefined;

test.before(async () => {
  dir = await makeTempDir("service_control");
  const etc = join(dir.path, "etc/oscam");
  const bin = join(dir.path, "bin");
  const run = join(dir.path, "run");
  const units = join(dir.path, "units");
  await cp(join(fixtures, "main"), join(etc, "main"), { recursive: true });
  await mkdir(bin, { recursive: true });
  await mkdir(run, { recursive: true });
  await mkdir(join(units, "multi-user.target.wants"), { recursive: true });
  await writeFile(join(units, "oscam@.service"), `[Service]\nExecStart=/usr/local/bin/oscam -r 0 -c ${etc}/%i -t ${run}/tmp-%i -B ${run}/oscam-%i.pid\n`);
  await writeFile(join(units, "multi-user.target.wants/oscam@main.service"), "");
  // OScam stand-in: named oscam, writes its pid file, stays up.
  await symlink(process.execPath, join(bin, "oscam"));
  await writeFile(
    join(bin, "stand-in.cjs"),
    `require("node:fs").writeFileSync(process.argv[process.argv.indexOf("-B") + 1], String(process.pid)); setInterval(() => {}, 1000);`,
  );
  // systemctl stand-in: what systemd would do for oscam@main.service.
  await writeFile(
    join(bin, "systemctl"),
    `#!/bin/sh
pidfile=${run}/oscam-main.pid
case "$1" in
  start) if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then exit 0; fi
         rm -f "$pidfile"
         nohup ${bin}/oscam ${bin}/stand-in.cjs -c ${etc}/main -t ${run}/tmp-main -B "$pidfile" >/dev/null 2>&1 &
         i=0; while [ ! -s "$pidfile" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; exit 0 ;;
  stop) if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null; rm -f "$pidfile"; fi; exit 0 ;;
  restart) "$0" stop "$2" && "$0" start "$2" ;;
  *) echo "unsupported: $1" >&2; exit 1 ;;
esac
`,
  );
  await chmod(join(bin, "systemctl"), 0o755);
  panel = await startPanelHost("service_control", { AGENT_HEARTBEAT_INTERVAL_SECONDS: "1" });
  await panel.setLicense(10, 10);
  const { token } = await createInstallToken(panel.db, { server: "svc-1", createdBy: "test" });
  const reg = runAgentCli(
    ["register", "--panel", panel.url, "--pin", panel.host.tls.fingerprint, "--token-stdin", "--state-dir", join(dir.path, "state")],
    {},
    token,
  );
  assert.is(await reg.exited, 0, reg.stderr());
  serverId = (await panel.db("servers").where({ name: "svc-1" }).first()).id;
  agent = runAgentCli(["run", "--state-dir", join(dir.path, "state"), "--unit-dir", units], { PATH: `${bin}:${process.env.PATH}` });
  await agent.waitForStderr(/"msg":"command stream open"/);
});
test.after(async () => {
  if (agent.child.exitCode === null) agent.child.kill("SIGKILL");
  const pid = await currentPid();
  if (pid) process.kill(pid, "SIGKILL");
  await panel.stop();
  await dir.remove();
});

test("start, restart and stop: each reports the state checked after it", async () => {
  const started = await send("start");
  assert.is(started.status, "succeeded", started.result);
  const firstPid = await currentPid();
  assert.match(started.result, new RegExp(`running \\(pid ${firstPid}\\)`));
  const restarted = await send("restart");
  assert.is(restarted.status, "succeeded", restarted.result);
  const secondPid = await currentPid();
  assert.ok(secondPid && secondPid !== firstPid, "a new process");
  const stopped = await send("stop");
  assert.is(stopped.status, "succeeded", stopped.result);
  assert.match(stopped.result, /is stopped/);
  assert.is(await currentPid(), undefined);
});

test("the sudoers rule in deploy/ passes visudo where visudo is installed", () => {
  const rule = join(repo, "deploy/sudoers.d/myosicam-agent");
  let visudo: string | undefined;
  for (const candidate of ["/usr/sbin/visudo", "/usr/bin/visudo"]) {
    try {
      execFileSync(candidate, ["-V"], { stdio: "ignore" });
      visudo = candidate;
      break;
    } catch {
      // not installed here
    }
  }
  if (!visudo) {
    console.log("    (visudo is not installed: the rule's syntax was not checked here; CI installs sudo)");
    return;
  }
  execFileSync(visudo, ["-cf", rule], { stdio: "pipe" });
});

test.run();
