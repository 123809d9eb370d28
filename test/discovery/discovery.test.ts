import { spawn, type ChildProcess } from "node:child_process";
import { cp, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { isOscamProgram, parseOscamArgs } from "../../agent/discovery/cmdline.js";
import { discoverInstances } from "../../agent/discovery/discover.js";
import { execStartOf } from "../../agent/discovery/units.js";
import { parseVersionFile } from "../../agent/discovery/version-file.js";
import { freePort } from "../../services/lib/embedded-postgres.js";
import { makeTempDir } from "../helpers/cli.js";

const fixtures = resolve(import.meta.dirname, "../fixtures/oscam");
const test = suite("discovery: configured dirs, systemd units and running processes, deduplicated by config dir");

let dir: Awaited<ReturnType<typeof makeTempDir>>;
let standIn: ChildProcess;
let webifPort: number;

test.before(async () => {
  dir = await makeTempDir("discovery");
  const etc = join(dir.path, "etc/oscam");
  for (const name of ["main", "backup"]) await cp(join(fixtures, name), join(etc, name), { recursive: true });
  // The running instance's WebIF listens on a free port: the stand-in serves it.
  webifPort = await freePort();
  const conf = join(etc, "main/oscam.conf");
  await writeFile(conf, (await readFile(conf, "utf8")).replace(/^(httpport\s*=\s*)\d+/m, `$1${webifPort}`));
  // A systemd template unit, enabled for "backup" (not running).
  const units = join(dir.path, "systemd");
  await mkdir(join(units, "multi-user.target.wants"), { recursive: true });
  await writeFile(
    join(units, "oscam@.service"),
    `[Service]\nExecStart=/usr/local/bin/oscam -r 0 -c ${etc}/%i -t ${dir.path}/run/oscam-%i \\\n  -B ${dir.path}/run/oscam-%i.pid\nRestart=always\n`,
  );
  await writeFile(join(units, "multi-user.target.wants/oscam@backup.service"), "");
  await writeFile(join(units, "other.service"), "[Service]\nExecStart=/usr/bin/sleep infinity\n");
  // A process standing in for OScam: named oscam, writes its pid file, answers HTTP on the WebIF port.
  const bin = join(dir.path, "bin");
  await mkdir(bin, { recursive: true });
  await mkdir(join(dir.path, "run"), { recursive: true });
  await symlink(process.execPath, join(bin, "oscam"));
  await writeFile(
    join(bin, "stand-in.cjs"),
    `const http = require("node:http"); const fs = require("node:fs");
     const arg = (f) => process.argv[process.argv.indexOf(f) + 1];
     fs.writeFileSync(arg("-B"), String(process.pid));
     http.createServer((q, r) => { r.writeHead(401); r.end(); }).listen(Number(process.env.PORT), "127.0.0.1", () => process.stdout.write("ready\\n"));`,
  );
  standIn = spawn(
    join(bin, "oscam"),
    [join(bin, "stand-in.cjs"), "-b", "-c", join(etc, "main") + "/", "-t", join(dir.path, "tmp-main"), "-B", join(dir.path, "run/main.pid")],
    {
      env: { PORT: String(webifPort) },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  await new Promise<void>((resolveReady) => standIn.stdout!.once("data", () => resolveReady()));
});
test.after(async () => {
  standIn.kill("SIGKILL");
  await dir.remove();
});

test("two instances: one running (found from its process), one stopped (found from its unit)", async () => {
  const instances = await discoverInstances({ unitDirs: [join(dir.path, "systemd")], probeWebif: true });
  const ours = instances.filter((i) => i.configDir.startsWith(dir.path));
  assert.equal(
    ours.map((i) => i.name),
    ["backup", "main"],
  );
  const [backup, main] = ours as [(typeof ours)[0], (typeof ours)[0]];

  assert.equal(main.sources, ["process"]);
  assert.ok(main.running);
  assert.is(main.pid, standIn.pid);
  assert.ok((main.uptimeSeconds ?? -1) >= 0);
  assert.is(main.configDir, join(dir.path, "etc/oscam/main"), "the trailing slash of -c is normalised");
  assert.is(main.tempDir, join(dir.path, "tmp-main"));
  assert.is(main.pidFile, join(dir.path, "run/main.pid"), "-B wins over the pidfile key");
  assert.equal(main.files, { conf: true, user: true, server: true });
  assert.is(main.version, "2.25.12-11931");
  assert.is(main.commit, "5e0f1c2a");
  assert.equal(main.webif, { enabled: true, host: "127.0.0.1", port: webifPort, ssl: false, answers: true });

  assert.equal(backup.sources, ["systemd"]);
  assert.is(backup.unit, "oscam@backup.service");
  assert.not.ok(backup.running);
  assert.is(backup.tempDir, join(dir.path, "run/oscam-backup"));
  assert.is(backup.pidFile, join(dir.path, "run/oscam-backup.pid"));
  assert.is(backup.webif.port, 8889);
  assert.is(backup.webif.answers, undefined, "a stopped instance is not probed");
});

test("a configured dir and a process for the same dir are one instance", async () => {
  const instances = await discoverInstances({ configDirs: [join(dir.path, "etc/oscam/main")], unitDirs: [] });
  const main = instances.filter((i) => i.configDir === join(dir.path, "etc/oscam/main"));
  assert.is(main.length, 1);
  assert.equal(main[0]!.sources.sort(), ["configured", "process"]);
});

test("OScam's command line in every form getopt accepts", () => {
  assert.equal(parseOscamArgs(["-b", "-c", "/etc/oscam", "-t", "/tmp/x", "-B", "/run/o.pid", "-r", "0"]), {
    daemon: true,
    configDir: "/etc/oscam",
    tempDir: "/tmp/x",
    pidFile: "/run/o.pid",
    restartMode: 0,
  });
  assert.is(parseOscamArgs(["-c/etc/a"]).configDir, "/etc/a");
  assert.is(parseOscamArgs(["--config-dir=/etc/b"]).configDir, "/etc/b");
  assert.is(parseOscamArgs(["--config-dir", "/etc/c"]).configDir, "/etc/c");
  assert.equal(parseOscamArgs(["-bc", "/etc/d"]), { daemon: true, configDir: "/etc/d" });
  assert.ok(isOscamProgram("/usr/local/bin/oscam"));
  assert.ok(isOscamProgram("oscam-emu"));
  assert.not.ok(isOscamProgram("/usr/bin/myosicam-agent"));
  assert.equal(execStartOf("[Service]\nExecStart=-/usr/bin/oscam \"-c\" '/etc/with space'\n"), ["/usr/bin/oscam", "-c", "/etc/with space"]);
});

test("oscam.version: both formats; the PID line is the supervisor's", async () => {
  const current = parseVersionFile(await readFile(join(fixtures, "main/oscam.version"), "utf8"));
  assert.equal(
    { v: current.version, c: current.commit, s: current.startTime, p: current.supervisorPid, t: current.tempDir, d: current.configDir, w: current.webifPort },
    { v: "2.25.12-11931", c: "5e0f1c2a", s: 1767001234, p: 1187, t: "/tmp/.oscam-main", d: "/etc/oscam/main/", w: 8888 },
  );
  const legacy = parseVersionFile("Unix starttime: 1400000000\nVersion:        oscam-1.20-unstable_svn-r11540\nPID:            1\nWebifPort:      8888\n");
  assert.equal([legacy.version, legacy.startTime, legacy.supervisorPid, legacy.webifPort], ["oscam-1.20-unstable_svn-r11540", 1400000000, 1, 8888]);
  assert.equal(parseVersionFile("\0garbage\nno colon"), { modules: {} });
});

test("oscam.version says which protocol modules the binary has, by oscam.conf section", async () => {
  const { modules } = parseVersionFile(await readFile(join(fixtures, "main/oscam.version"), "utf8"));
  assert.equal(modules, {
    camd33: true,
    cs357x: true,
    cs378x: true,
    newcamd: true,
    cccam: true,
    gbox: true,
    radegast: true,
    scam: true,
    serial: true,
    pandora: false,
    streamrelay: true,
    monitor: true,
  });
});

test.run();
