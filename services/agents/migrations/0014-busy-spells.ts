import type { Migration } from "../../lib/db.js";

/**
 * The spells in which a panel process refused calls for load (admission control), written by the
 * process and read by every replica's liveness scan: silence while a panel turned calls away is
 * the panel's deafness, not the agents' silence.
 */
export const busySpells: Migration = {
  name: "agents/0014_busy_spells",
  async up(db) {
    await db.schema.createTable("panel_busy_spells", (t) => {
      t.uuid("id").primary();
      t.timestamp("started_at", { useTz: true }).notNullable().comment("the first call refused");
      t.timestamp("last_refused_at", { useTz: true }).notNullable().comment("the last call refused so far (written every 5 s at most)");
      t.integer("refused").notNullable().comment("calls refused so far");
      t.boolean("over").notNullable().comment("5 s passed without a refusal");
      t.index(["last_refused_at"]);
    });
  },
};
