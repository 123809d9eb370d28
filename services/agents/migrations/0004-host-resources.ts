import type { Migration } from "../../lib/db.js";

/**
 * The history of each server's host resources, one reading per heartbeat (instance readings go to
 * resource_samples). Kept as long as resource_samples (the retention job deletes both).
 */
export const hostResources: Migration = {
  name: "agents/0004_host_resources",
  async up(db) {
    await db.schema.createTable("host_resource_samples", (t) => {
      t.bigIncrements("id");
      t.uuid("server_id").notNullable().references("servers.id").onDelete("CASCADE");
      t.timestamp("at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.float("cpu_percent").notNullable();
      t.float("memory_used_mb").notNullable();
      t.float("memory_total_mb").notNullable();
      t.float("disk_used_mb").notNullable();
      t.specificType("load_average", "real[]").notNullable().defaultTo("{}");
      t.index(["server_id", "at"]);
      t.index(["at"]);
    });
  },
};
