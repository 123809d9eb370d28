import type { Migration } from "../../lib/db.js";

/** Tags on servers: filters in the operator API, and operator scopes (DESIGN.md §3.7). */
export const serverTags: Migration = {
  name: "agents/0007_server_tags",
  async up(db) {
    await db.schema.alterTable("servers", (t) => {
      t.specificType("tags", "text[]").notNullable().defaultTo("{}");
    });
    await db.raw("create index servers_tags on servers using gin (tags)");
    // Free-text search over name and hostname (ListServers' query) without a scan of every row.
    await db.raw("create extension if not exists pg_trgm");
    await db.raw(
      "create index servers_search on servers using gin ((lower(name || ' ' || coalesce(hostname, '') || ' ' || coalesce(seen_ip, '') || ' ' || coalesce(reported_ip, ''))) gin_trgm_ops)",
    );
  },
};
