import type { Knex, Migration } from "../db.js";

/** `hmac_nonces`: every (caller, nonce) accepted within the replay window (DESIGN.md §3.1). */
export const nonceMigrations: readonly Migration[] = [
  {
    name: "core/0002_hmac_nonces",
    async up(db) {
      await db.schema.createTable("hmac_nonces", (t) => {
        t.text("caller_id").notNullable();
        t.text("nonce").notNullable();
        t.timestamp("seen_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
        t.primary(["caller_id", "nonce"]);
        t.index(["seen_at"]);
      });
    },
  },
];

/**
 * Records a nonce; answers false when (caller, nonce) was already recorded. One statement, so of
 * any number of concurrent attempts — on any replica sharing the database — exactly one is fresh.
 */
export async function recordNonce(db: Knex, callerId: string, nonce: string): Promise<boolean> {
  const inserted = await db("hmac_nonces").insert({ caller_id: callerId, nonce }).onConflict(["caller_id", "nonce"]).ignore().returning("nonce");
  return inserted.length === 1;
}

/** Deletes nonces older than `olderThanSeconds` (twice the skew window); answers how many. */
export async function purgeNonces(db: Knex, olderThanSeconds: number): Promise<number> {
  return db("hmac_nonces").where("seen_at", "<", db.raw("now() - make_interval(secs => ?)", [olderThanSeconds])).delete();
}
