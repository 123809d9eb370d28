import type { Migration } from "../../lib/db.js";

/**
 * Saved servers: where the installer connects over SSH and with what credential (sealed by the
 * crypto service). Until this migration the table was created by `crypto/0001_secret_tables`; a
 * database that ran that one has it already, so it is created only when missing.
 */
export const savedServers: Migration = {
  name: "install/0001_saved_servers",
  async up(db) {
    if (await db.schema.hasTable("saved_servers")) return;
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
  },
};
