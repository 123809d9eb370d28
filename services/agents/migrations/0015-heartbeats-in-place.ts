import type { Migration } from "../../lib/db.js";

/**
 * Heartbeats rewrite a server's row in place. Every heartbeat moves `last_seen_at`, and while an
 * index held it PostgreSQL wrote a new entry in every index of `servers` (the name, the tags, the
 * trigram search) for each heartbeat. Without it, and with room left on each page, the update is a
 * heap-only tuple (HOT) one: 100,000 heartbeats in batches of 170 over 10,000 servers took 17.1 s
 * of PostgreSQL's CPU before, 7.8 s after (docs/sizing.md). The liveness scan, the only query
 * that filtered on it, reads the servers of a status, which an index on the status alone serves.
 */
export const heartbeatsInPlace: Migration = {
  name: "agents/0015_heartbeats_in_place",
  async up(db) {
    await db.raw("drop index if exists servers_status_last_seen_at_index");
    await db.raw("create index servers_status on servers (status)");
    await db.raw("alter table servers set (fillfactor = 80)");
  },
};
