import type { Migration } from "../../lib/db.js";

/**
 * Staged rollouts of agent releases: the rollout with its rules, and one row per server with where
 * it stands, the version it came from (what a roll back returns it to) and its upgrade command.
 */
export const rollouts: Migration = {
  name: "agents/0013_rollouts",
  async up(db) {
    await db.schema.createTable("rollouts", (t) => {
      t.uuid("id").primary();
      t.text("version").notNullable().comment("the target version; 'previous' for a roll back (per server)");
      t.text("state").notNullable().comment("running, paused, halted, completed, cancelled");
      t.integer("canary").notNullable();
      t.integer("batch_percent").notNullable();
      t.integer("max_failures").notNullable();
      t.boolean("pause_on_failure").notNullable();
      t.integer("failures_accepted").notNullable().defaultTo(0).comment("failures an operator resumed past");
      t.integer("batches_sent").notNullable().defaultTo(0);
      t.text("halted_reason").notNullable().defaultTo("");
      t.uuid("rollback_of").references("rollouts.id").onDelete("SET NULL");
      t.text("created_by").notNullable();
      t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.timestamp("finished_at", { useTz: true });
      t.index(["created_at"]);
    });
    await db.raw("create index rollouts_active on rollouts (id) where state in ('running', 'paused', 'halted')");
    await db.schema.createTable("rollout_servers", (t) => {
      t.uuid("rollout_id").notNullable().references("rollouts.id").onDelete("CASCADE");
      t.uuid("server_id").notNullable().references("servers.id").onDelete("CASCADE");
      t.primary(["rollout_id", "server_id"]);
      t.integer("position").notNullable();
      t.text("state").notNullable().comment("waiting, sent, succeeded, failed, skipped");
      t.text("from_version").notNullable().defaultTo("");
      t.text("target_version").notNullable();
      t.integer("batch");
      t.boolean("online_at_send");
      t.uuid("command_id");
      t.text("reason").notNullable().defaultTo("");
      t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.index(["rollout_id", "state"]);
      t.index(["server_id"]);
    });
  },
};
