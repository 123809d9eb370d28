import type { Migration } from "../../lib/db.js";

/**
 * Admin's tables: callers (service-to-service trust, DESIGN.md §3.1), plans and licenses (§3.8),
 * and the vendor's admin operators with their sessions and audit trail.
 */
export const trustAndLicenses: Migration = {
  name: "admin/0001_trust_and_licenses",
  async up(db) {
    const timestamps = (t: import("knex").Knex.CreateTableBuilder) => {
      t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
    };
    await db.schema.createTable("callers", (t) => {
      t.text("id").primary();
      t.text("description").notNullable().defaultTo("");
      t.text("status").notNullable().defaultTo("active");
      t.text("secret").notNullable().comment("crypto envelope (ADMIN_ENCRYPTION_KEY)");
      t.text("previous_secret").comment("crypto envelope: the secret before the last rotation, accepted until previous_valid_until");
      t.timestamp("previous_valid_until", { useTz: true });
      t.specificType("allowed_procedures", "text[]").notNullable();
      timestamps(t);
      t.timestamp("rotated_at", { useTz: true });
      t.check("status in ('active', 'inactive')", [], "callers_status");
      t.check("id ~ '^[A-Za-z0-9_.:-]{1,128}$'", [], "callers_id_shape");
    });
    await db.schema.createTable("plans", (t) => {
      t.text("id").primary();
      t.text("name").notNullable();
      t.integer("max_servers").notNullable().comment("0 = unlimited");
      t.integer("max_instances").notNullable().comment("0 = unlimited");
      t.bigInteger("monthly_price_minor").notNullable().defaultTo(0);
      t.specificType("currency", "char(3)").notNullable().defaultTo("EUR");
      t.specificType("features", "text[]").notNullable().defaultTo("{}");
      t.boolean("public").notNullable().defaultTo(true).comment("listed by GetPlanCatalog");
      timestamps(t);
      t.check("max_servers >= 0 and max_instances >= 0 and monthly_price_minor >= 0", [], "plans_non_negative");
      t.check("id ~ '^[a-z0-9][a-z0-9-]{0,62}$'", [], "plans_id_shape");
    });
    await db.schema.createTable("licenses", (t) => {
      t.uuid("id").primary();
      t.text("key_hash").notNullable().unique().comment("sha256 hex of the license key; the key itself is never stored");
      t.text("key_hint").notNullable().comment("first characters of the key, to recognise it in lists");
      t.text("customer").notNullable();
      t.text("plan_id").notNullable().references("plans.id");
      t.text("status").notNullable().defaultTo("active");
      t.timestamp("expires_at", { useTz: true }).comment("null: never expires");
      t.uuid("panel_id").comment("the panel installation it is bound to (on first validation when not issued bound)");
      timestamps(t);
      t.timestamp("revoked_at", { useTz: true });
      t.text("revoked_reason");
      t.timestamp("last_validated_at", { useTz: true });
      t.integer("last_usage_servers");
      t.integer("last_usage_instances");
      t.timestamp("last_usage_at", { useTz: true });
      t.check("status in ('active', 'revoked')", [], "licenses_status");
    });
    await db.schema.createTable("admin_operators", (t) => {
      t.uuid("id").primary();
      t.text("email").notNullable().unique();
      t.text("password_hash").notNullable().comment("Argon2id (PHC string)");
      timestamps(t);
      t.timestamp("disabled_at", { useTz: true });
    });
    await db.schema.createTable("admin_sessions", (t) => {
      t.text("token_hash").primary().comment("sha256 hex of the session token");
      t.uuid("operator_id").notNullable().references("admin_operators.id").onDelete("CASCADE");
      t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.timestamp("expires_at", { useTz: true }).notNullable();
      t.text("ip");
      t.index(["expires_at"]);
    });
    await db.schema.createTable("admin_login_failures", (t) => {
      t.bigIncrements("id");
      t.text("subject").notNullable().comment("ip:<address> or email:<address>");
      t.timestamp("at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.index(["subject", "at"]);
    });
    await db.schema.createTable("admin_audit", (t) => {
      t.bigIncrements("id");
      t.timestamp("at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.text("actor").notNullable().comment("operator email, or cli:<os user>");
      t.text("action").notNullable();
      t.text("target").notNullable();
      t.text("ip");
      t.text("request_id");
      t.index(["at"]);
    });
  },
};
