import type { Migration } from "../../lib/db.js";

/**
 * The operator API's own tables (DESIGN.md §3.7): operators and their server-side sessions,
 * failed logins (the rate limit), API clients (HMAC secrets sealed by the crypto service), and the
 * append-only, hash-chained audit log of every mutation.
 */
export const operatorsAndAudit: Migration = {
  name: "panel/0001_operators_and_audit",
  async up(db) {
    const scope = (t: import("knex").Knex.CreateTableBuilder) => {
      t.specificType("scope_server_ids", "uuid[]").notNullable().defaultTo("{}").comment("empty with scope_tags empty: every server");
      t.specificType("scope_tags", "text[]").notNullable().defaultTo("{}");
    };
    const role = "role in ('viewer', 'operator', 'admin', 'owner')";
    await db.schema.createTable("operators", (t) => {
      t.uuid("id").primary();
      t.text("email").notNullable().unique().comment("lower case");
      t.text("password_hash").notNullable().comment("Argon2id");
      t.text("role").notNullable();
      scope(t);
      t.boolean("temporary_login").notNullable().defaultTo(true).comment("its password is a one-time one: a new one must be chosen at sign-in");
      t.timestamp("disabled_at", { useTz: true });
      t.text("created_by").notNullable();
      t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.timestamp("last_login_at", { useTz: true });
      t.timestamp("login_changed_at", { useTz: true });
      t.check(role, [], "operators_role");
    });
    await db.schema.createTable("operator_sessions", (t) => {
      t.uuid("id").primary();
      t.text("token_hash").notNullable().unique().comment("sha256 hex of the cookie's token; the token itself is never stored");
      t.uuid("operator_id").notNullable().references("operators.id").onDelete("CASCADE");
      t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.timestamp("last_seen_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.timestamp("expires_at", { useTz: true }).notNullable().comment("absolute end; idle end is last_seen_at + the idle timeout");
      t.text("ip").notNullable().defaultTo("");
      t.text("user_agent").notNullable().defaultTo("");
      t.index(["operator_id"]);
      t.index(["expires_at"]);
    });
    await db.schema.createTable("operator_login_failures", (t) => {
      t.bigIncrements("id");
      t.text("subject").notNullable().comment("ip:<address> or email:<address>");
      t.timestamp("at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.index(["subject", "at"]);
    });
    await db.schema.createTable("api_clients", (t) => {
      t.text("id").primary().comment("the caller id it signs with: ac_ + 24 hex");
      t.text("name").notNullable().unique();
      t.text("description").notNullable().defaultTo("");
      t.text("role").notNullable();
      scope(t);
      t.text("secret").notNullable().comment("crypto envelope (PANEL_ENCRYPTION_KEY): the HMAC key");
      t.text("previous_secret").comment("crypto envelope: the secret before the last rotation");
      t.timestamp("previous_valid_until", { useTz: true });
      t.timestamp("revoked_at", { useTz: true });
      t.text("owner_id").comment("the operator (or API client) it acts for: revoked with them, never above their role");
      t.text("created_by").notNullable();
      t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.timestamp("rotated_at", { useTz: true });
      t.timestamp("last_used_at", { useTz: true });
      t.check(role, [], "api_clients_role");
    });
    await db.schema.createTable("audit_log", (t) => {
      t.bigInteger("id").primary().comment("strictly increasing in commit order (taken under the audit lock)");
      t.timestamp("at", { useTz: true }).notNullable();
      t.text("actor_kind").notNullable().comment("operator, api_client or system");
      t.text("actor_id").notNullable();
      t.text("actor_name").notNullable();
      t.text("action").notNullable().comment("the RPC, e.g. ServerService.ApproveServers");
      t.text("target").notNullable().defaultTo("");
      t.text("outcome").notNullable().comment("ok, or the error code");
      t.text("detail").notNullable().defaultTo("");
      t.text("ip").notNullable().defaultTo("");
      t.text("request_id").notNullable().defaultTo("");
      t.text("prev_hash").notNullable();
      t.text("hash").notNullable().comment("sha256 over this row's content and prev_hash");
      t.index(["at"]);
      t.index(["actor_id"]);
      t.index(["action"]);
    });
    await db.raw("create sequence audit_log_id_seq owned by audit_log.id");
    // Append-only from the application's side: nothing it runs updates or deletes a row. The chain
    // (`myosicam audit verify`) tells when someone did it by hand.
  },
};
