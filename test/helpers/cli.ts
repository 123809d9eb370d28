import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
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
  /**
   * Resolves once stderr matches `pattern` (log lines arrive through a pipe, after responses);
   * rejects after `timeoutMs` (default 120 s) with the end of what it logged, never hangs a run.
   */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code (or 128 + signal number when killed). */
  exited: Promise<number>;
}

/** The configuration files `emptyConfigFile` made, removed when the test process exits. */
const configFiles = new Set<string>();
process.once("exit", () => {
  for (const file of configFiles) rmSync(file, { force: true });
});

/** A fresh, empty configuration file outside the repository (removed when the test process exits). */
export function emptyConfigFile(): string {
  const file = join(tmpdir(), `myosicam-config-${randomBytes(6).toString("hex")}.env`);
  writeFileSync(file, "", { mode: 0o600 });
  configFiles.add(file);
  return file;
}

/**
 * Runs the CLI as `npx myosicam` would, with the pinned Node and a controlled environment: only
 * PATH, HOME and `env` are passed, so the developer's own settings cannot leak in, and the
 * configuration file is a fresh temporary one unless `env` names one (a first start writes its
 * generated key there, never into the repository's config/.env). `input`, when given, is its stdin.
 */
export function runCli(args: string[], env: Record<string, string>, cwd = repo, input?: string): CliProcess {
  return runEntry("cli/main.ts", args, env, cwd, input);
}

/**
 * Runs the agent (`myosicam-agent`) the same way. Its resync after a reported change comes at once
 * unless `env` says otherwise: a test that edits a file by hand right after a change set must not
 * wait up to a minute for the hold that spreads a fleet's resyncs (resync-later.test.ts tests it).
 */
export function runAgentCli(args: string[], env: Record<string, string>, input?: string): CliProcess {
  return runEntry("agent/main.ts", args, { MYOSICAM_AGENT_RESYNC_SPREAD_SECONDS: "0", ...env }, repo, input);
}

function runEntry(entry: string, args: string[], env: Record<string, string>, cwd: string, input?: string): CliProcess {
  const child = spawn(process.execPath, ["--import", "tsx", join(repo, entry), ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", LOG_LEVEL: "info", MYOSICAM_CONFIG_FILE: emptyConfigFile(), ...env },
    stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
  if (input !== undefined) child.stdin!.end(input);
  let out = "";
  let err = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number>((resolveExit) => child.on("close", (code, signal) => resolveExit(code ?? 128 + (signal === "SIGKILL" ? 9 : 15))));
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
  const waitForStderr = (pattern: RegExp, timeoutMs = 120_000) =>
    new Promise<string>((resolveMatch, reject) => {
      const timer = setTimeout(() => {
        child.stderr!.off("data", check);
        reject(new Error(`stderr did not match ${pattern} within ${timeoutMs / 1000} s; its end:\n${err.slice(-3000)}`));
      }, timeoutMs);
      timer.unref();
      const check = () => {
        const match = pattern.exec(err);
        if (match) {
          clearTimeout(timer);
          child.stderr!.off("data", check);
          resolveMatch(match[0]);
        }
      };
      child.stderr!.on("data", check);
      check();
      exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`exited before stderr matched ${pattern}`));
      });
    });
  return { child, stdout: () => out, stderr: () => err, firstJson, waitForStderr, exited };
}

/** A temporary directory PostgreSQL's own user may traverse (tests run as root in CI). */
export async function makeTempDir(label: string): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `myosicam-${label}-`));
  await chmod(path, 0o711);
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/**
 * A `myosicam` runner bound to an environment: runs a command to its end and answers its exit
 * code, output and, for a successful `--json` command, the parsed object.
 */
export function cliWith(env: () => Record<string, string>) {
  return async <T = Record<string, unknown>>(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string; json?: T }> => {
    const run = runCli(args, env(), undefined, input);
    const code = await run.exited;
    const stdout = run.stdout();
    return { code, stdout, stderr: run.stderr(), json: args.includes("--json") && code === 0 ? (JSON.parse(stdout) as T) : undefined };
  };
}
