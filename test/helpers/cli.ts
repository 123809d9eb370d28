import { spawn, type ChildProcess } from "node:child_process";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const repo = resolve(import.meta.dirname, "../..");

/** A `myosicam` process started by a test. */
export interface CliProcess {
  child: ChildProcess;
  /** Everything written to stdout / stderr so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the first complete stdout line parsed as JSON (what `--json` prints). */
  firstJson<T = Record<string, unknown>>(): Promise<T>;
  /** Resolves with the exit code (or 128 + signal number when killed). */
  exited: Promise<number>;
}

/**
 * Runs the CLI as `npx myosicam` would, with the pinned Node and a controlled environment: only
 * PATH, HOME and `env` are passed, so the developer's own settings cannot leak in.
 */
export function runCli(args: string[], env: Record<string, string>, cwd = repo): CliProcess {
  const child = spawn(process.execPath, ["--import", "tsx", join(repo, "cli/main.ts"), ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number>((resolveExit) =>
    child.on("close", (code, signal) => resolveExit(code ?? 128 + (signal === "SIGKILL" ? 9 : 15))),
  );
  const firstJson = <T>() =>
    new Promise<T>((resolveJson, reject) => {
      const check = () => {
        const newline = out.indexOf("\n");
        if (newline >= 0) {
          child.stdout!.off("data", check);
          try {
            resolveJson(JSON.parse(out.slice(0, newline)) as T);
          } catch {
            reject(new Error(`stdout is not JSON: ${out.slice(0, 200)}`));
          }
        }
      };
      child.stdout!.on("data", check);
      check();
      exited.then((code) => reject(new Error(`exited ${code} before printing JSON; stderr: ${err.slice(-2000)}`)));
    });
  return { child, stdout: () => out, stderr: () => err, firstJson, exited };
}

/** A temporary directory PostgreSQL's own user may traverse (tests run as root in CI). */
export async function makeTempDir(label: string): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `myosicam-${label}-`));
  await chmod(path, 0o711);
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}
