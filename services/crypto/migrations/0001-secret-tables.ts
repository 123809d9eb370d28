import type { Migration } from "../../lib/db.js";

/**
 * The tables that hold encrypted columns (DESIGN.md §3.5), created up front so that key rotation
 * covers them from the first release. Their owning services (sync, installer, alerts) extend them
 * with further columns in their own migrations.
 */
export const secretTables: Migration = {
  name: "crypto/0001_secret_tables",
  async up(db) {
    await db.schema.createTable("oscam_installs", (t) => {
      t.uuid("id").primary();
      t.uuid("server_id");
      t.text("instance_name").notNullable();
      t.text("webif_username");
      t.text("webif_password").comment("crypto envelope");
      t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.unique(["server_id", "instance_name"]);
    });
    await db.schema.createTable("saved_servers", (t) => {
      t.uuid("id").primary();
      t.text("name").notNullable().unique();
      t.text("host").notNullable();
      t.integer("port").notNullable().defaultTo(22);
      t.text("username").notNullable();
      t.text("auth_kind").notNullable();
      t.text("ssh_credential_encrypted").notNullable().comment("crypto envelope: password or private key");
      t.text("host_key_fingerprint").comment("sha256 of the pinned SSH host key, set on first use");
      t.text("created_by").notNullable();
      t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.check("auth_kind in ('password', 'private_key')", [], "saved_servers_auth_kind");
      t.check("port between 1 and 65535", [], "saved_servers_port");
    });
    const emailColumns = (t: import("knex").Knex.CreateTableBuilder) => {
      t.text("provider").notNullable().defaultTo("none");
      t.text("from_address");
      t.text("smtp_host");
      t.integer("smtp_port");
      t.boolean("smtp_secure").notNullable().defaultTo(true);
      t.text("smtp_username");
      t.text("smtp_password").comment("crypto envelope");
      t.text("mailgun_domain");
      t.text("mailgun_region");
      t.text("mailgun_api_key").comment("crypto envelope");
      t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
    };
    await db.schema.createTable("email_settings", (t) => {
      t.uuid("id").primary();
      // One row: the panel's default mail route.
      t.boolean("singleton").notNullable().defaultTo(true).unique();
      emailColumns(t);
      t.check("singleton", [], "email_settings_one_row");
      t.check("provider in ('none', 'smtp', 'mailgun')", [], "email_settings_provider");
    });
    await db.schema.createTable("email_configurations", (t) => {
      t.uuid("id").primary();
      t.text("name").notNullable().unique();
      emailColumns(t);
      t.check("provider in ('none', 'smtp', 'mailgun')", [], "email_configurations_provider");
    });
  },
};
