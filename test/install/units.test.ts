import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { makeTempDir } from "../helpers/cli.js";

const test = suite("systemd units: the agent's (written by the bootstrap) and the panel's are valid for systemd");

const repo = resolve(import.meta.dirname, "../..");
let dir: Awaited<ReturnType<typeof makeTempDir>>;

/** `systemd-analyze verify`: exit 0 even for unknown keys, so its output must be empty too. */
async function verify(unit: string): Promise<string> {
  const { stdout, stderr } = await promisify(execFile)("systemd-analyze", ["verify", unit]).catch(
    (err: { stdout?: string; stderr?: string; code?: string }) => {
      if (err.code === "ENOENT") throw new Error("systemd-analyze is missing: install Debian's systemd package (.ci/run does)");
      return { stdout: err.stdout ?? "", stderr: `${err.stderr ?? ""} (failed)` };
    },
  );
  return (stdout + stderr).trim();
}

test.before(async () => {
  dir = await makeTempDir("units");
});
test.after(async () => {
  await dir.remove();
});

test("the agent unit the bootstrap writes passes systemd-analyze verify without a warning", async () => {
  const bootstrap = await readFile(join(repo, "deploy/bootstrap.sh"), "utf8");
  const body = /cat >"\$WORK\/unit" <<EOF\n([\s\S]*?)\nEOF\n/.exec(bootstrap)?.[1];
  assert.ok(body, "the bootstrap writes the unit from a here-document");
  // The values the bootstrap fills in; the binary must exist for verify, so a real one stands in.
  const unit = body!
    .replaceAll("$AGENT_USER", "myosicam-agent")
    .replaceAll("$AGENT_START", process.execPath)
    .replaceAll("$STATE_DIR", dir.path)
    .replaceAll("$RW", `${dir.path} /etc/oscam`);
  for (const line of ["User=myosicam-agent", "Restart=always", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=no"])
    assert.ok(unit.includes(line), line);
  const file = join(dir.path, "myosicam-agent.service");
  await writeFile(file, unit);
  assert.is(await verify(file), "");
});

test("the panel unit in deploy/ passes systemd-analyze verify without a warning", async () => {
  const unit = (await readFile(join(repo, "deploy/systemd/myosicam-panel.service"), "utf8")).replace("/opt/myosicam/node_modules/.bin/node", process.execPath);
  const file = join(dir.path, "myosicam-panel.service");
  await writeFile(file, unit);
  assert.is(await verify(file), "");
});

test.run();
