import type { Migration } from "../../lib/db.js";

/**
 * Alerts an operator has acknowledged (AlertService), and the liveness setting operators change
 * at run time (missed heartbeats before unreachable; AGENT_MISSED_HEARTBEATS until set).
 */
export const alertAcknowledgement: Migration = {
  name: "agents/0008_alert_acknowledgement",
  async up(db) {
    await db.schema.alterTable("alerts", (t) => {
      t.timestamp("acknowledged_at", { useTz: true });
      t.text("acknowledged_by");
      t.index(["server_id", "raised_at"]);
    });
    await db.schema.createTable("liveness_settings", (t) => {
      t.boolean("singleton").primary().defaultTo(true);
      t.integer("missed_heartbeats").notNullable();
      t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.check("singleton", [], "liveness_settings_one_row");
      t.check("missed_heartbeats between 1 and 100", [], "liveness_settings_missed");
    });
  },
};
