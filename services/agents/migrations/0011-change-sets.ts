import type { Migration } from "../../lib/db.js";

/**
 * Fleet-wide accounts (AccountService): who last changed each account and whether it drifted
 * (changed on the server outside the panel), change sets with one row per account they touch,
 * and the field-level history of every account (passwords only as sealed envelopes, never in the
 * JSON columns). Indexes serve the account table's filters and sorts over tens of thousands.
 */
export const changeSets: Migration = {
  name: "agents/0011_change_sets",
  async up(db) {
    await db.raw("create extension if not exists pg_trgm");
    await db.schema.alterTable("accounts", (t) => {
      t.timestamp("changed_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.text("changed_by").notNullable().defaultTo("").comment("principal name, 'outside the panel', or '' (first seen)");
      t.uuid("change_set_id");
      t.boolean("drifted").notNullable().defaultTo(false).comment("changed outside the panel since the last AcknowledgeDrift");
      t.text("unreadable_expiry").notNullable().defaultTo("").comment("expdate as written when OScam cannot read it (counts as expired)");
      t.index(["username", "id"]);
      t.index(["expiry_date"]);
      t.index(["changed_at"]);
    });
    await db.raw("create index accounts_search on accounts using gin (lower(username || ' ' || description) gin_trgm_ops)");
    await db.raw("create index accounts_drifted on accounts (instance_id) where drifted");
    // The table's expiry order (never-expiring last).
    await db.raw("create index accounts_expiry_order on accounts ((coalesce(expiry_date, '9999-12-31'::date)), id)");
    await db.schema.alterTable("instances", (t) => {
      t.timestamp("drift_acknowledged_at", { useTz: true }).comment("hand edits seen before this are accepted");
    });

    await db.schema.createTable("change_sets", (t) => {
      t.uuid("id").primary();
      t.text("description").notNullable().defaultTo("");
      t.text("summary").notNullable();
      t.text("selection").notNullable().defaultTo("");
      t.jsonb("spec").notNullable().comment("the edits and selection as given, without passwords");
      t.text("created_by").notNullable();
      t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.uuid("reverts_change_set_id").references("change_sets.id").onDelete("SET NULL");
      t.integer("retries").notNullable().defaultTo(0);
      t.index(["created_at"]);
    });
    await db.schema.createTable("change_set_items", (t) => {
      t.bigIncrements("id");
      t.uuid("change_set_id").notNullable().references("change_sets.id").onDelete("CASCADE");
      t.uuid("instance_id").notNullable().references("instances.id").onDelete("CASCADE");
      t.text("username").notNullable();
      t.text("operation").notNullable().comment("create, update, delete");
      t.jsonb("planned").notNullable().comment("[{field, before, after}] as planned, passwords masked");
      t.uuid("command_id").comment("the latest apply_accounts command carrying it");
      t.integer("change_index").comment("its index among that command's changes");
      t.text("status").comment("the agent's answer: applied, unchanged, failed; null while the command has none");
      t.text("failure_code").notNullable().defaultTo("");
      t.text("detail").notNullable().defaultTo("");
      t.boolean("confirmed").notNullable().defaultTo(false).comment("a sync has shown its effect (or that nothing changed)");
      t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.index(["change_set_id", "id"]);
      t.index(["command_id", "change_index"]);
      t.index(["instance_id", "username"]);
    });
    await db.schema.createTable("account_history", (t) => {
      t.bigIncrements("id");
      t.timestamp("at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.uuid("instance_id").notNullable().references("instances.id").onDelete("CASCADE");
      t.text("username").notNullable();
      t.text("source").notNullable().comment("panel, outside");
      t.text("actor").notNullable();
      t.uuid("change_set_id").references("change_sets.id").onDelete("SET NULL");
      t.bigInteger("item_id");
      t.text("operation").notNullable().comment("create, update, delete");
      // json, not jsonb: the keys keep the order they have in the file (a re-created account gets them back in it).
      t.json("before").comment("keys as written before, without pwd; null when the account did not exist");
      t.json("after").comment("keys as written after, without pwd; null when deleted");
      t.boolean("pwd_changed").notNullable().defaultTo(false);
      t.text("password_before").comment("crypto envelope of the previous password (for Revert)");
      t.text("followed_by").notNullable().defaultTo("").comment("delete: the account after it in the file");
      t.index(["instance_id", "username", "id"]);
      t.index(["change_set_id", "id"]);
    });
  },
};
