import type { Migration } from "../../lib/db.js";

/**
 * What agents sync (DESIGN.md §3.4): each server's OScam instances with their config summary and
 * runtime, their accounts (passwords as crypto envelopes), and a history of resource readings.
 */
export const instancesAndAccounts: Migration = {
  name: "agents/0002_instances_and_accounts",
  async up(db) {
    await db.schema.createTable("instances", (t) => {
      t.uuid("id").primary();
      t.uuid("server_id").notNullable().references("servers.id").onDelete("CASCADE");
      t.text("name").notNullable();
      t.text("config_dir").notNullable();
      t.text("working_dir").notNullable().defaultTo("");
      t.text("pid_file").notNullable().defaultTo("");
      t.text("version").notNullable().defaultTo("");
      t.text("content_hash").notNullable();
      t.boolean("running").notNullable().defaultTo(false);
      t.integer("pid");
      t.bigInteger("uptime_seconds");
      t.integer("reader_count").notNullable().defaultTo(0);
      t.jsonb("ports").notNullable().defaultTo("[]");
      t.jsonb("settings").notNullable().defaultTo("[]");
      t.jsonb("webif").notNullable().defaultTo("{}").comment("host, port, ssl, reachable, username, readOnly; the password is in oscam_installs");
      t.timestamp("synced_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.timestamp("gone_at", { useTz: true }).comment("the agent stopped reporting it; kept, not deleted");
      t.unique(["server_id", "name"]);
    });
    await db.schema.createTable("accounts", (t) => {
      t.uuid("id").primary();
      t.uuid("instance_id").notNullable().references("instances.id").onDelete("CASCADE");
      t.text("username").notNullable();
      t.text("password").comment("crypto envelope (PANEL_ENCRYPTION_KEY)");
      t.boolean("enabled").notNullable();
      t.specificType("groups", "integer[]").notNullable().defaultTo("{}");
      t.text("caid").notNullable().defaultTo("");
      t.text("ident").notNullable().defaultTo("");
      t.date("expiry_date");
      t.text("description").notNullable().defaultTo("");
      t.jsonb("extra").notNullable().defaultTo("[]");
      t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.unique(["instance_id", "username"]);
    });
    await db.schema.createTable("resource_samples", (t) => {
      t.bigIncrements("id");
      t.uuid("instance_id").notNullable().references("instances.id").onDelete("CASCADE");
      t.timestamp("at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.float("cpu_percent").notNullable();
      t.float("rss_mb").notNullable();
      t.float("disk_mb").notNullable();
      t.index(["instance_id", "at"]);
      t.index(["at"]);
    });
  },
};
