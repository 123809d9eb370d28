import { spawn, type ChildProcess } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");

/** Writes the start wrapper the bootstrap installs (its text, taken from deploy/bootstrap.sh) to `file`. */
export async function writeStartWrapper(file: string): Promise<string> {
  const bootstrap = await readFile(join(repo, "deploy/bootstrap.sh"), "utf8");
  const body = /<<'WRAPPER'\n([\s\S]*?)\nWRAPPER\n/.exec(bootstrap)?.[1];
  if (!body) throw new Error("deploy/bootstrap.sh has no start wrapper here-document");
  await writeFile(file, `${body}\n`, { mode: 0o755 });
  return file;
}

/**
 * Plays systemd's part for the agent (there is no systemd as PID 1 here): runs the start wrapper,
 * and whenever it exits starts it again after `restartMs` (`Restart=always`), until stopped.
 * Each run has its own process group, stopped as systemd stops a unit's cgroup.
 */
export interface AgentSupervisor {
  /** How many times the wrapper was started. */
  starts(): number;
  /** Everything the wrapper and the agent wrote to stderr and stdout, over every run. */
  output(): string;
  /** Environment for the next starts. */
  setEnv(env: Record<string, string>): void;
  stop(): Promise<void>;
}

export function superviseAgent(options: { wrapper: string; args: string[]; env: Record<string, string>; restartMs?: number }): AgentSupervisor {
  let env = { ...options.env };
  let child: ChildProcess | undefined;
  let starts = 0;
  let stopped = false;
  let output = "";
  let timer: NodeJS.Timeout | undefined;
  let exited: Promise<void> = Promise.resolve();
  const start = () => {
    starts++;
    const run = spawn("sh", [options.wrapper, ...options.args], { env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    child = run;
    run.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    run.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    exited = new Promise((resolve) =>
      run.once("exit", (code, signal) => {
        output += `[supervisor] run ${starts} exited (${signal ?? code})\n`;
        resolve();
        if (!stopped) timer = setTimeout(start, options.restartMs ?? 200);
      }),
    );
  };
  start();
  return {
    starts: () => starts,
    output: () => output,
    setEnv: (next) => {
      env = { ...env, ...next };
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      if (child?.pid && child.exitCode === null && child.signalCode === null) {
        const group = -child.pid;
        try {
          process.kill(group, "SIGTERM");
        } catch {}
        const killer = setTimeout(() => {
          try {
            process.kill(group, "SIGKILL");
          } catch {}
        }, 10_000);
        await exited;
        clearTimeout(killer);
      }
    },
  };
}
