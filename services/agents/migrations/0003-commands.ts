import type { Migration } from "../../lib/db.js";

/** Commands for agents, as data (DESIGN.md §3.4): pending → delivered → succeeded / failed / expired. */
export const commands: Migration = {
  name: "agents/0003_commands",
  async up(db) {
    await db.schema.createTable("commands", (t) => {
      t.uuid("id").primary();
      t.uuid("server_id").notNullable().references("servers.id").onDelete("CASCADE");
      t.text("instance").notNullable().defaultTo("");
      t.text("kind").notNullable();
      t.text("payload").comment("crypto envelope of the command's payload (it may carry account passwords)");
      t.text("created_by").notNullable();
      t.timestamp("created_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.timestamp("delivered_at", { useTz: true });
      t.timestamp("finished_at", { useTz: true });
      t.timestamp("deadline", { useTz: true }).notNullable();
      t.text("status").notNullable().defaultTo("pending");
      t.text("result").notNullable().defaultTo("");
      t.text("failure_code").notNullable().defaultTo("");
      t.specificType("restart_required_keys", "text[]").notNullable().defaultTo("{}");
      t.integer("attempts").notNullable().defaultTo(0);
      t.check("status in ('pending', 'delivered', 'succeeded', 'failed', 'expired')", [], "commands_status");
      t.index(["server_id", "status", "created_at"]);
      t.index(["status", "deadline"]);
    });
  },
};
