import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { freePort } from "../services/lib/embedded-postgres.js";
import { postgresBinaries, postgresUserIds } from "../services/lib/postgres-process.js";
import { emptyConfigFile, makeTempDir, runCli } from "./helpers/cli.js";
import { eventually } from "./helpers/eventually.js";
import { getHttp2 } from "./helpers/https.js";

const test = suite("the panel process as users and supervisors stop it: npm start, signals, SIGKILL, a dying PostgreSQL");

const repo = join(import.meta.dirname, "..");
let dir: Awaited<ReturnType<typeof makeTempDir>>;
let configFile: string;
const dataDir = () => join(dir.path, "data");
const env = () => ({
  MYOSICAM_CONFIG_FILE: configFile,
  MYOSICAM_DATA_DIR: dataDir(),
  PANEL_PORT: "0",
  ADMIN_PORT: "0",
  EMBEDDED_POSTGRES_PORT: "0",
  SHUTDOWN_TIMEOUT_SECONDS: "5",
  LOG_LEVEL: "info",
});

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};
const postmasterPid = async () => Number((await readFile(join(dataDir(), "postgres", "postmaster.pid"), "utf8")).split("\n")[0]);
const ownerPid = async () => Number((await readFile(join(dataDir(), "postgres.owner"), "utf8")).trim());
const gone = (pid: number, what: string) =>
  eventually(
    async () => isAlive(pid),
    (alive) => !alive,
    `${what} (pid ${pid}) to end`,
  );

/** `npm start -- --json` in a process group of its own, as a terminal or a supervisor runs it. */
function npmStart() {
  const child = spawn("npm", ["start", "--silent", "--", "--json"], {
    cwd: repo,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...env() },
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number>((resolve) => child.on("exit", (code, signal) => resolve(code ?? 128 + (signal === "SIGINT" ? 2 : 15))));
  const running = eventually(
    async () => out,
    (o) => o.includes('"status":"running"'),
    "npm start to report running",
  );
  return { child, running, exited, stderr: () => err };
}

test.before(async () => {
  dir = await makeTempDir("panel-process");
  configFile = emptyConfigFile();
});
test.after(async () => {
  await dir.remove();
});

test("kill -TERM of npm (as a container runtime does) stops the panel and PostgreSQL and exits 0", async () => {
  const npm = npmStart();
  await npm.running;
  const [node, postgres] = [await ownerPid(), await postmasterPid()];
  process.kill(npm.child.pid!, "SIGTERM");
  assert.is(await npm.exited, 0, npm.stderr());
  await gone(node, "the panel");
  await gone(postgres, "PostgreSQL");
});

test("Ctrl+C through npm start (SIGINT to the process group) stops everything and exits 0 with no error line", async () => {
  const npm = npmStart();
  await npm.running;
  const [node, postgres] = [await ownerPid(), await postmasterPid()];
  process.kill(-npm.child.pid!, "SIGINT");
  assert.is(await npm.exited, 0, npm.stderr());
  await gone(node, "the panel");
  await gone(postgres, "PostgreSQL");
  // What the Ctrl+C caused: the lines from "stopping" on.
  const stopping = npm.stderr().slice(npm.stderr().indexOf('"msg":"stopping"'));
  const errors = stopping.split("\n").filter((l) => /"level":(40|50|60)|ERR!|error/i.test(l));
  assert.equal(errors, []);
});

test("SIGKILL of the panel: its PostgreSQL ends with it, and the next start runs normally", async () => {
  const up = runCli(["up", "--json"], env());
  await up.firstJson();
  const postgres = await postmasterPid();
  up.child.kill("SIGKILL");
  await up.exited;
  await gone(postgres, "PostgreSQL");
  const again = runCli(["up", "--json"], env());
  assert.is((await again.firstJson<{ status: string }>()).status, "running");
  again.child.kill("SIGTERM");
  assert.is(await again.exited, 0);
});

test("a PostgreSQL left running on the data directory by a panel that is gone is stopped at start, with a warning", async () => {
  // An orphan: the postmaster of this data directory, run by nobody that still lives.
  const { postgres } = await postgresBinaries();
  const ids = await postgresUserIds();
  const orphan = spawn(
    postgres,
    ["-D", join(dataDir(), "postgres"), "-p", String(await freePort()), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
    {
      detached: true,
      stdio: "ignore",
      ...(ids ?? {}),
    },
  );
  orphan.unref();
  await eventually(
    () => postmasterPid().catch(() => 0),
    (pid) => pid === orphan.pid,
    "the orphan to run",
  );
  await writeFile(join(dataDir(), "postgres.owner"), "999999\n");
  const up = runCli(["up", "--json"], env());
  assert.is((await up.firstJson<{ status: string }>()).status, "running");
  assert.match(up.stderr(), /left running on this data directory by a MyOsicam that did not stop cleanly; stopping it/);
  assert.not.ok(isAlive(orphan.pid!), "the orphan was stopped");
  up.child.kill("SIGTERM");
  assert.is(await up.exited, 0);
});

test("the embedded PostgreSQL is restarted after it died, logged once, and /readyz says what happened", async () => {
  const up = runCli(["up", "--json"], env());
  const report = await up.firstJson<{ listeners: { panel: { url: string } }; tls: { certFile: string } }>();
  const ca = await readFile(report.tls.certFile, "utf8");
  const first = await postmasterPid();
  process.kill(first, "SIGKILL");
  const ready = await eventually(
    async () => JSON.parse((await getHttp2(`${report.listeners.panel.url}/readyz`, ca).catch(() => ({ body: "{}" }))).body),
    (r) => r.status === "ready" && r.checks.embeddedPostgres?.restarts === 1,
    "the panel to be ready again on a restarted PostgreSQL",
  );
  assert.is(ready.checks.embeddedPostgres.state, "running");
  assert.ok(isAlive(await postmasterPid()) && (await postmasterPid()) !== first);
  assert.is(up.stderr().split("the embedded PostgreSQL exited unexpectedly").length - 1, 1, "logged once");
  up.child.kill("SIGTERM");
  assert.is(await up.exited, 0);
});

test.run();
