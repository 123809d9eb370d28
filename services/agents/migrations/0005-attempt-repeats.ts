import type { Migration } from "../../lib/db.js";

/**
 * Attempts refused for coming too fast (the per-address limit) are recorded too, but a flood of
 * them counts on one row a minute (`repeats`, `last_at`) rather than a row each.
 */
export const attemptRepeats: Migration = {
  name: "agents/0005_attempt_repeats",
  async up(db) {
    for (const table of ["registration_attempts", "download_attempts"]) {
      await db.schema.alterTable(table, (t) => {
        t.integer("repeats").notNullable().defaultTo(0).comment("further identical attempts within a minute of `at`");
        t.timestamp("last_at", { useTz: true });
      });
    }
  },
};
