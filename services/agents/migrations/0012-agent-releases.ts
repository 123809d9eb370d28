import type { Migration } from "../../lib/db.js";

/**
 * Agent releases as data: one row per version and target with its signed manifest, the
 * executable stored zstd-compressed in 1 MiB chunks (every replica serves the same bytes from the
 * shared database), and the version an `upgrade_agent` command asks for, readable without opening
 * its sealed payload so that a heartbeat of that version can mark it done.
 */
export const agentReleases: Migration = {
  name: "agents/0012_agent_releases",
  async up(db) {
    await db.schema.createTable("agent_releases", (t) => {
      t.text("version").notNullable();
      t.text("target").notNullable().comment("linux-x64, linux-arm64");
      t.primary(["version", "target"]);
      t.text("sha256").notNullable().comment("of the executable, uncompressed");
      t.bigInteger("size").notNullable().comment("of the executable, uncompressed");
      t.bigInteger("compressed_size").notNullable();
      t.text("encoding").notNullable().comment("zstd");
      t.text("manifest").notNullable().comment("manifest.json as signed, byte for byte");
      t.text("signature").notNullable().comment("manifest.sig (base64 Ed25519)");
      t.text("key_id").notNullable();
      t.timestamp("built_at", { useTz: true }).notNullable();
      t.timestamp("uploaded_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      t.text("uploaded_by").notNullable();
    });
    await db.schema.createTable("agent_release_chunks", (t) => {
      t.text("version").notNullable();
      t.text("target").notNullable();
      t.integer("seq").notNullable();
      t.binary("data").notNullable();
      t.primary(["version", "target", "seq"]);
      t.foreign(["version", "target"]).references(["version", "target"]).inTable("agent_releases").onDelete("CASCADE");
    });
    await db.schema.alterTable("commands", (t) => {
      t.text("target_version").comment("upgrade_agent: the version asked for");
    });
    await db.raw("create index commands_upgrades_in_flight on commands (server_id) where kind = 'upgrade_agent' and status in ('pending', 'delivered')");
  },
};
