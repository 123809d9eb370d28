import type { Knex } from "knex";
import { migrationsFor, prepareDataDir } from "../services/host.js";
import { migrateDatabase, openDatabases } from "../services/lib/databases.js";
import type { DatabaseName } from "../services/lib/service-module.js";
import type { CommandContext } from "./context.js";

/**
 * Runs `fn` on one database (the embedded PostgreSQL, started for the command, or the configured
 * URL), migrated to the latest schema; stops everything afterwards.
 */
export async function withDatabase<T>(context: CommandContext, name: DatabaseName, fn: (db: Knex, url: string) => Promise<T>): Promise<T> {
  await prepareDataDir(context.config.dataDir);
  const databases = await openDatabases(context.config, [name], context.log);
  try {
    const db = databases.get(name);
    await migrateDatabase(db, name, migrationsFor(name), context.log);
    return await fn(db, databases.url(name));
  } finally {
    await databases.close();
  }
}
