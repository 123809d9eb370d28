import type { Migration } from "../../lib/db.js";

/**
 * Servers and their agents (DESIGN.md §3.3), the single-use install tokens that enroll them
 * (§3.2), the audit of registration and download attempts, and the alerts liveness raises.
 */
export const serversAndTokens: Migration = {
  name: "agents/0001_servers_and_tokens",
  async up(db) {
    await db.schema.createTable("servers", (t) => {
      t.uuid("id").primary();
      t.text("name").notNullable().unique();
      t.text("status").notNullable().defaultTo("new").comment("new (no agent yet), pending, online, unreachable, revoked");
      t.boolean("approved").notNullable().defaultTo(false);
      t.uuid("agent_id");
      t.text("hostname");
      t.text("reported_ip");
      t.text("seen_ip");
      t.text("os");
      t.text("os_version");
      t.text("arch");
      t.text("agent_version");
      t.text("agent_token").comment("crypto envelope (PANEL_ENCRYPTION_KEY): the agent's HMAC key");
      t.timestamp("registered_at", { useTz: true });
      t.timestamp("last_seen_at", { useTz: true });
      t.timestamp("unreachable_since", { useTz: true });
      t.bigInteger("uptime_seconds");
      t.text("health");
      t.specificType("load_average", "real[]");
      t.text("created_by").notNullable();
      t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.check("status in ('new', 'pending', 'online', 'unreachable', 'revoked')", [], "servers_status");
      t.index(["status", "last_seen_at"]);
    });
    await db.schema.createTable("install_tokens", (t) => {
      t.text("token_hash").primary().comment("sha256 hex of the token; the token itself is never stored");
      t.uuid("server_id").notNullable().references("servers.id").onDelete("CASCADE");
      t.text("created_by").notNullable();
      t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.timestamp("expires_at", { useTz: true }).notNullable();
      t.timestamp("consumed_at", { useTz: true });
      t.timestamp("revoked_at", { useTz: true });
      t.index(["server_id"]);
    });
    const attempts = (t: import("knex").Knex.CreateTableBuilder) => {
      t.bigIncrements("id");
      t.timestamp("at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.text("ip").notNullable();
      t.text("hash_prefix").comment("first 8 hex characters of the token's SHA-256, to match `token list`");
      t.text("outcome").notNullable();
      t.text("reason").notNullable();
      t.index(["ip", "at"]);
    };
    await db.schema.createTable("registration_attempts", (t) => {
      attempts(t);
      t.uuid("server_id");
      t.text("request_id");
    });
    await db.schema.createTable("download_attempts", (t) => {
      attempts(t);
      t.text("artifact").notNullable();
    });
    await db.schema.createTable("alerts", (t) => {
      t.bigIncrements("id");
      t.uuid("server_id").references("servers.id").onDelete("CASCADE");
      t.text("kind").notNullable().comment("server_unreachable, server_recovered");
      t.text("message").notNullable();
      t.timestamp("raised_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.timestamp("emailed_at", { useTz: true });
      t.text("email_error");
      t.index(["raised_at"]);
    });
  },
};

/** Who alert e-mails go to. Named to sort after agents/0009, which creates `email_settings`. */
export const alertRecipients: Migration = {
  name: "email/0001_alert_recipients",
  async up(db) {
    await db.schema.alterTable("email_settings", (t) => {
      t.specificType("alert_recipients", "text[]").notNullable().defaultTo("{}");
    });
  },
};
