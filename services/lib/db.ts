import knex, { type Knex } from "knex";
import type { Logger } from "pino";

export type { Knex } from "knex";

/**
 * One forward-only migration. Names are `<service>/<NNNN>_<what>` and sort in the order they run
 * within a database; each runs in its own transaction. There is no `down`: a mistake is fixed by
 * a new migration.
 */
export interface Migration {
  readonly name: string;
  up(db: Knex): Promise<void>;
}

/**
 * Opens a pool on a PostgreSQL URL. The pool connects lazily; `checkDatabase` proves it works.
 * `genericPlans`: its connections plan each prepared statement once and reuse that plan
 * (`plan_cache_mode=force_generic_plan`), for the pool of the statements every agent call makes
 * (see `prepared`); every other statement is better planned for its parameters.
 */
export function createDatabase(url: string, log: Logger, poolMax = 10, options: { genericPlans?: boolean } = {}): Knex {
  return knex({
    client: "pg",
    connection: url,
    pool: {
      min: 0,
      max: poolMax,
      ...(options.genericPlans && {
        afterCreate: (connection: { query(sql: string, done: (err: Error | null) => void): void }, done: (err: Error | null, connection: unknown) => void) =>
          connection.query("set plan_cache_mode = force_generic_plan", (err) => done(err, connection)),
      }),
    },
    acquireConnectionTimeout: 10_000,
    // knex warns with stack traces for conditions our callers already report in words
    // (e.g. "connection refused"); keep its chatter for debugging only.
    log: {
      warn: (message: unknown) => log.debug({ knex: String(message) }, "database warning"),
      error: (message: unknown) => log.error({ knex: String(message) }, "database error"),
      deprecate: () => {},
      debug: () => {},
    },
  });
}

/**
 * Makes `query` a named prepared statement: PostgreSQL parses it once per connection, then only
 * binds and runs it; on a pool opened with `genericPlans` it is planned once too. For the small
 * statements every agent call makes (its server's trust row, its nonce, the heartbeat batch, the
 * claim), planning took PostgreSQL longer than running them, and PostgreSQL's own choice kept
 * planning the trust row and the heartbeat batch at every call: the plan for a batch of one
 * server is costed below the generic one (docs/sizing.md). The text must be the same at every
 * call, lists passed as array parameters rather than spelled out (`in (…)`, `values …`): pg
 * refuses one name for two texts. A connection pooler in front of PostgreSQL must keep sessions.
 */
export function prepared<Query extends Knex.ChainableInterface>(query: Query, name: string): Query {
  return query.options({ name: `myosicam_${name}` });
}

/**
 * A double as PostgreSQL's `real` (4 bytes) holds it. Validation bounds readings below real's
 * largest value, but one nearer zero than real's smallest (4.3e-78, as the protocol fuzzer sent)
 * made PostgreSQL refuse the whole statement ("out of range for type real"); rounded here to the
 * nearest real, it is stored as the column would hold it (0 there).
 */
export const asReal = (value: number): number => Math.fround(value);

/** The most parameters PostgreSQL's protocol takes in one statement (a 16-bit count). */
const maxParameters = 65_535;

/**
 * Inserts `rows` in as many statements as PostgreSQL's parameter limit needs (a fan-out to 10,000
 * servers is 80,000 parameters in one); answers the `returning` columns of every row, in order.
 * Call it with a transaction for all-or-nothing.
 */
export async function insertRows<Row>(
  db: Knex,
  table: string,
  rows: ReadonlyArray<Record<string, unknown>>,
  returning: readonly string[] = [],
): Promise<Row[]> {
  const columns = Math.max(1, Object.keys(rows[0] ?? {}).length);
  const perStatement = Math.min(1000, Math.floor(maxParameters / columns));
  const answered: Row[] = [];
  for (let start = 0; start < rows.length; start += perStatement) {
    const statement = db(table).insert(rows.slice(start, start + perStatement));
    if (returning.length > 0) answered.push(...((await statement.returning([...returning])) as Row[]));
    else await statement;
  }
  return answered;
}

/**
 * A failed query's error in PostgreSQL's own words with its SQLSTATE, without the statement knex
 * puts in front of them (placeholders only, but a batch's statement runs to tens of kilobytes).
 */
export function queryErrorWords(err: unknown): string {
  const message = err instanceof Error ? err.message : wordsOfNonError(err);
  const words = /^(insert|update|delete|select|with)\b/i.test(message) && message.includes(" - ") ? message.slice(message.lastIndexOf(" - ") + 3) : message;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? `${words} (${code})` : words;
}

/**
 * Something thrown that is not an Error, in words: its `message` when it has one, otherwise what
 * kind of thing it is and its keys, never "[object Object]" (a panel at 10,000 agents once logged
 * that as the reason the database could not be reached). Not its values: it may hold settings
 * with a password in them, and these words are logged.
 */
function wordsOfNonError(thrown: unknown): string {
  if (typeof thrown !== "object" || thrown === null) return String(thrown);
  const { message } = thrown as { message?: unknown };
  if (typeof message === "string" && message) return message;
  const name = (thrown as { constructor?: { name?: unknown } }).constructor?.name;
  const keys = Object.keys(thrown).slice(0, 20).join(", ");
  return `a thrown ${typeof name === "string" && name ? name : "object"} without a message${keys ? ` (keys: ${keys})` : ""}`;
}

/**
 * An error as it is logged: a failed query's as PostgreSQL's words and SQLSTATE with its pointers
 * (a deadlock's detail names the processes and locks), without knex's statement; anything else as is.
 */
export function loggableError(err: unknown): unknown {
  if (!(err instanceof Error) || typeof (err as { code?: unknown }).code !== "string" || !("severity" in err)) return err;
  const e = err as Error & { detail?: string; hint?: string; table?: string; constraint?: string };
  return { type: e.name, message: queryErrorWords(e), detail: e.detail, hint: e.hint, table: e.table, constraint: e.constraint };
}

/**
 * How a pool stands: connections in use, idle, being opened, callers waiting for one, and its
 * size; undefined once destroyed. Connections being opened count against the size: a pool of 10
 * with 2 in use and none free may be opening the other 8.
 */
export function poolState(db: Knex): { used: number; free: number; opening: number; waiting: number; size: number } | undefined {
  const pool = (db.client as { pool?: { numUsed(): number; numFree(): number; numPendingCreates(): number; numPendingAcquires(): number; max: number } }).pool;
  if (!pool) return undefined;
  return { used: pool.numUsed(), free: pool.numFree(), opening: pool.numPendingCreates(), waiting: pool.numPendingAcquires(), size: pool.max };
}

function migrationSource(migrations: readonly Migration[]): Knex.MigrationSource<Migration> {
  const sorted = [...migrations].sort((a, b) => a.name.localeCompare(b.name));
  const names = new Set<string>();
  for (const m of sorted) {
    if (names.has(m.name)) throw new Error(`two migrations are named ${m.name}`);
    names.add(m.name);
  }
  return {
    getMigrations: async () => sorted,
    getMigrationName: (m) => m.name,
    getMigration: async (m) => ({
      up: (db: Knex) => m.up(db),
      down: async () => {
        throw new Error(`migrations are forward-only: ${m.name} cannot be undone; write a new migration`);
      },
    }),
  };
}

const migrationConfig = (migrations: readonly Migration[]): Knex.MigratorConfig => ({
  migrationSource: migrationSource(migrations),
  tableName: "knex_migrations",
  // Another process may already have run a migration this one no longer lists (a newer release
  // on a replica); refusing to start would turn a rolling upgrade into an outage.
  disableMigrationsListValidation: true,
});

/** Applies every pending migration, each in a transaction; answers the names it applied. */
export async function migrateToLatest(db: Knex, migrations: readonly Migration[]): Promise<string[]> {
  const [, applied] = (await db.migrate.latest(migrationConfig(migrations))) as [number, string[]];
  return applied;
}

/** Names of migrations not yet applied to `db`. */
export async function pendingMigrations(db: Knex, migrations: readonly Migration[]): Promise<string[]> {
  const [, pending] = (await db.migrate.list(migrationConfig(migrations))) as [unknown, Array<{ file?: string } | Migration>];
  return pending.map((m) => ("name" in m ? m.name : String(m.file)));
}

/** Database readiness as `/readyz` reports it. */
export interface DatabaseStatus {
  reachable: boolean;
  pendingMigrations: number;
  error?: string;
}

/** Whether `db` answers and has every migration applied; never throws. */
export async function checkDatabase(db: Knex, migrations: readonly Migration[]): Promise<DatabaseStatus> {
  try {
    await db.raw("select 1");
  } catch (err) {
    return { reachable: false, pendingMigrations: -1, error: describeDatabaseError(err) };
  }
  try {
    return { reachable: true, pendingMigrations: (await pendingMigrations(db, migrations)).length };
  } catch (err) {
    return { reachable: true, pendingMigrations: -1, error: describeDatabaseError(err) };
  }
}

/** A database error in words that name no secret (connection URLs are never echoed). */
export function describeDatabaseError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  if (e?.code === "ECONNREFUSED") return "connection refused";
  if (e?.code === "28P01") return "password authentication failed";
  if (e?.code === "3D000") return "database does not exist";
  if (e?.code === "ENOTFOUND") return "host not found";
  if (typeof e?.message === "string" && e.message.includes("Timeout acquiring")) return "timed out connecting";
  return e?.code ? `database error ${e.code}` : "database error";
}
