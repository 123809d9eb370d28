import { databasesFor, migrationsFor, prepareDataDir } from "../services/host.js";
import { serviceRegistry } from "../services/index.js";
import { migrateDatabase, openDatabases } from "../services/lib/databases.js";
import { createCommandContext, printJson } from "./context.js";

/**
 * `migrate`: applies pending migrations to the panel and admin databases (configured or embedded)
 * and exits. `up` and `serve` do the same at start; this is for deploys that migrate first.
 */
export async function migrateCommand(options: { json: boolean }): Promise<void> {
  const { config, log } = await createCommandContext();
  await prepareDataDir(config.dataDir);
  const names = databasesFor(serviceRegistry);
  const databases = await openDatabases(config, names, log);
  const applied: Record<string, string[]> = {};
  try {
    for (const name of names) applied[name] = await migrateDatabase(databases.get(name), name, migrationsFor(name), log);
  } finally {
    await databases.close();
  }
  if (options.json) printJson({ applied });
  else {
    for (const [db, list] of Object.entries(applied)) {
      process.stdout.write(list.length ? `${db}: applied ${list.join(", ")}\n` : `${db}: up to date\n`);
    }
  }
}
