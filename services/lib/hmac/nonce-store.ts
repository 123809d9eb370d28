import type { Knex, Migration } from "../db.js";

/**
 * `hmac_nonces`: every (caller, nonce) accepted within the replay window (DESIGN.md §3.1);
 * `hmac_refusals`: the audit trail of refused signed requests, with their reason code.
 */
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
  {
    name: "core/0003_hmac_refusals",
    async up(db) {
      await db.schema.createTable("hmac_refusals", (t) => {
        t.bigIncrements("id");
        t.timestamp("at", { useTz: true }).notNullable().defaultTo(db.fn.now());
        t.text("reason").notNullable();
        t.text("caller_id");
        t.text("procedure").notNullable();
        t.text("request_id").notNullable();
        t.text("peer");
        t.index(["at"]);
      });
    },
  },
];

/** How long the refusal audit trail is kept. */
export const refusalRetentionDays = 90;

/** Appends one refusal to the audit trail (never the signature or a secret: there is no column for them). */
export async function recordRefusal(
  db: Knex,
  event: { reason: string; callerId?: string; procedure: string; requestId: string; peer?: string },
): Promise<void> {
  await db("hmac_refusals").insert({
    reason: event.reason,
    caller_id: event.callerId ?? null,
    procedure: event.procedure.slice(0, 300),
    request_id: event.requestId,
    peer: event.peer ?? null,
  });
}

/** Deletes refusals older than `days`; answers how many. */
export async function purgeRefusals(db: Knex, days: number): Promise<number> {
  return db("hmac_refusals").where("at", "<", db.raw("now() - make_interval(days => ?)", [days])).delete();
}

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
