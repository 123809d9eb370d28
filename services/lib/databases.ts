import { join } from "node:path";
import type { Logger } from "pino";
import { ConfigError, type Config } from "./config.js";
import { createDatabase, describeDatabaseError, migrateToLatest, type Knex, type Migration } from "./db.js";
import { prepareClusterParent, startEmbeddedPostgres, type EmbeddedPostgres } from "./embedded-postgres.js";
import type { DatabaseName } from "./service-module.js";

/** Database names on the embedded server. */
export const embeddedDatabaseNames: Readonly<Record<DatabaseName, string>> = {
  panel: "myosicam_panel",
  admin: "myosicam_admin",
};

/** Open pools, and the embedded server when one was started. */
export interface OpenDatabases {
  get(name: DatabaseName): Knex;
  /** The connection URL of an open database (for libraries that keep their own pool). */
  url(name: DatabaseName): string;
  /**
   * A second, small pool on an open database whose connections plan each prepared statement once
   * (`genericPlans`): for the statements every agent call makes. Opened on first use.
   */
  genericPlans(name: DatabaseName): Knex;
  readonly embedded?: EmbeddedPostgres;
  /** Destroys the pools, then stops the embedded server; idempotent. */
  close(): Promise<void>;
}

/**
 * Opens the named databases: the configured URL (`DATABASE_URL`, `ADMIN_DATABASE_URL`) or, when
 * one is unset, a database on the embedded PostgreSQL under `<dataDir>/postgres`, started here.
 * Every pool is proven with a query; a failure names the setting. `serves`: this process serves
 * the data directory (`up`, `serve`), see EmbeddedPostgresOptions.owner.
 */
export async function openDatabases(
  config: Config,
  names: readonly DatabaseName[],
  log: Logger,
  options: { serves: boolean } = { serves: false },
): Promise<OpenDatabases> {
  const configured: Record<DatabaseName, string | undefined> = { panel: config.databaseUrl, admin: config.adminDatabaseUrl };
  const settings: Record<DatabaseName, string> = { panel: "DATABASE_URL", admin: "ADMIN_DATABASE_URL" };
  let embedded: EmbeddedPostgres | undefined;
  const pools = new Map<DatabaseName, Knex>();
  const genericPlanPools = new Map<DatabaseName, Knex>();
  const urls = new Map<DatabaseName, string>();
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await Promise.all([...pools.values(), ...genericPlanPools.values()].map((db) => db.destroy()));
    await embedded?.stop();
  };
  try {
    if (names.some((name) => configured[name] === undefined)) {
      await prepareClusterParent(config.dataDir);
      embedded = await startEmbeddedPostgres({
        directory: join(config.dataDir, "postgres"),
        port: config.embeddedPostgresPort,
        log: log.child({ component: "embedded-postgres" }),
        owner: options.serves,
      });
    }
    for (const name of names) {
      let url = configured[name];
      if (url === undefined && embedded) {
        await embedded.ensureDatabase(embeddedDatabaseNames[name]);
        url = embedded.url(embeddedDatabaseNames[name]);
      }
      const db = createDatabase(url!, log.child({ database: name }), config.databasePoolSize);
      pools.set(name, db);
      urls.set(name, url!);
      try {
        await db.raw("select 1");
      } catch (err) {
        const setting = configured[name] === undefined ? "EMBEDDED_POSTGRES_PORT" : settings[name];
        throw new ConfigError(setting, `cannot use the ${name} database: ${describeDatabaseError(err)}`);
      }
    }
  } catch (err) {
    await close();
    throw err;
  }
  return {
    get(name) {
      const db = pools.get(name);
      if (!db) throw new Error(`the ${name} database is not open in this process`);
      return db;
    },
    url(name) {
      const url = urls.get(name);
      if (!url) throw new Error(`the ${name} database is not open in this process`);
      return url;
    },
    genericPlans(name) {
      const url = urls.get(name);
      if (!url) throw new Error(`the ${name} database is not open in this process`);
      let db = genericPlanPools.get(name);
      if (!db)
        genericPlanPools.set(
          name,
          (db = createDatabase(url, log.child({ database: name, pool: "generic plans" }), genericPlanPoolSize, { genericPlans: true })),
        );
      return db;
    },
    embedded,
    close,
  };
}

/**
 * Connections of the generic-plan pool: one each for the batchers that use it (trust rows,
 * nonces, heartbeats, claims), which write one batch at a time.
 */
export const genericPlanPoolSize = 4;

/** Applies `migrations` to the database; logs what it applied. */
export async function migrateDatabase(db: Knex, name: DatabaseName, migrations: readonly Migration[], log: Logger) {
  const applied = await migrateToLatest(db, migrations);
  if (applied.length > 0) log.info({ database: name, applied }, "migrations applied");
  return applied;
}
