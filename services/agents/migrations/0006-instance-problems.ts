import type { Migration } from "../../lib/db.js";

/**
 * What the agent found wrong with an instance at its last sync (e.g. `webif_auth_failed: …`), and
 * how many readers the running OScam instantiated and enabled (null: its WebIF did not tell).
 */
export const instanceProblems: Migration = {
  name: "agents/0006_instance_problems",
  async up(db) {
    await db.schema.alterTable("instances", (t) => {
      t.jsonb("problems").notNullable().defaultTo("[]");
      t.integer("readers_loaded");
      t.integer("readers_enabled");
    });
  },
};
