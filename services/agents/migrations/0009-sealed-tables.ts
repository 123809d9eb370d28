import type { Knex } from "knex";
import type { Migration } from "../../lib/db.js";

/**
 * The agents service's tables with sealed columns (DESIGN.md §3.5): each instance's WebIF
 * credentials (sync), and the mail routes of alert e-mails. Until this migration they were
 * created by `crypto/0001_secret_tables`; a database that ran that one has them already, so each
 * is created only when missing.
 */
export const sealedTables: Migration = {
  name: "agents/0009_sealed_tables",
  async up(db) {
    if (!(await db.schema.hasTable("oscam_installs"))) {
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
    }
    const emailColumns = (t: Knex.CreateTableBuilder) => {
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
    if (!(await db.schema.hasTable("email_settings"))) {
      await db.schema.createTable("email_settings", (t) => {
        t.uuid("id").primary();
        // One row: the panel's default mail route.
        t.boolean("singleton").notNullable().defaultTo(true).unique();
        emailColumns(t);
        t.check("singleton", [], "email_settings_one_row");
        t.check("provider in ('none', 'smtp', 'mailgun')", [], "email_settings_provider");
      });
    }
    if (!(await db.schema.hasTable("email_configurations"))) {
      await db.schema.createTable("email_configurations", (t) => {
        t.uuid("id").primary();
        t.text("name").notNullable().unique();
        emailColumns(t);
        t.check("provider in ('none', 'smtp', 'mailgun')", [], "email_configurations_provider");
      });
    }
  },
};
