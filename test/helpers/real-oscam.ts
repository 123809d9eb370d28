/**
 * The real OScam of ../shared/oscam (README there), for tests of OScam's own behaviour: found
 * through OSCAM_BIN (`.ci/run` sets it); tests report themselves skipped, with the reason, without
 * it. Started in the foreground (`-r 0`), never as a daemon, and stopped by its pid.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { webifGet } from "../../agent/apply/webif.js";
import { freePort } from "../../services/lib/embedded-postgres.js";
import { eventually } from "./eventually.js";

/** Why the real-OScam tests cannot run here, or undefined when they can. */
export function realOscamMissing(): string | undefined {
  const bin = process.env.OSCAM_BIN;
  if (!bin) return "OSCAM_BIN is not set (.ci/run sets it to ../shared/oscam/bin/oscam)";
  if (!existsSync(bin)) return `OSCAM_BIN=${bin} does not exist`;
  return undefined;
}

export interface RealOscam {
  configDir: string;
  tempDir: string;
  pidFile: string;
  webifPort: number;
  user: string;
  password: string;
  /** Everything it logged (stdout and stderr). */
  log(): string;
  /** The pid of the running process. */
  readonly pid: number;
  /** An authenticated GET of its WebIF (digest), as the agent makes it. */
  get(path: string): Promise<string>;
  stop(): Promise<void>;
  /** Starts it again on the same directories (a new pid). */
  restart(): Promise<void>;
}

/** Writes a config dir under `dir` (oscam.conf with a WebIF on a free port, plus `extraConf`) and starts OScam on it. */
export async function startRealOscam(
  dir: string,
  options: { users?: string; server?: string; extraConf?: string; serverip?: string } = {},
): Promise<RealOscam> {
  const configDir = join(dir, "conf");
  const tempDir = join(dir, "tmp");
  const pidFile = join(dir, "oscam.pid");
  await mkdir(configDir, { recursive: true });
  await mkdir(tempDir, { recursive: true });
  const webifPort = await freePort();
  const user = "admin";
  const password = "webif-Pw-1";
  await writeFile(
    join(configDir, "oscam.conf"),
    `[global]\nlogfile = stdout\n\n${options.extraConf ?? ""}\n[webif]\nhttpport = ${webifPort}\nhttpuser = ${user}\nhttppwd = ${password}\nhttpallowed = 127.0.0.1\n${options.serverip ? `serverip = ${options.serverip}\n` : ""}`,
  );
  await writeFile(join(configDir, "oscam.user"), options.users ?? "");
  await writeFile(join(configDir, "oscam.server"), options.server ?? "");
  let child: ChildProcess;
  let output = "";
  const target = { host: "127.0.0.1", port: webifPort, ssl: false, user, password };
  const start = async () => {
    child = spawn(process.env.OSCAM_BIN!, ["-c", configDir, "-t", tempDir, "-B", pidFile, "-r", "0"], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
    await eventually(
      () =>
        webifGet(target, "/oscamapi.html?part=status").then(
          () => true,
          () => child.exitCode !== null,
        ),
      (ok) => ok,
      "OScam's WebIF to answer",
    );
    if (child.exitCode !== null) throw new Error(`OScam exited at start:\n${output}`);
  };
  await start();
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
  };
  return {
    configDir,
    tempDir,
    pidFile,
    webifPort,
    user,
    password,
    log: () => output,
    get pid() {
      return child.pid!;
    },
    get: (path) => webifGet(target, path),
    stop,
    async restart() {
      await stop();
      await start();
    },
  };
}
