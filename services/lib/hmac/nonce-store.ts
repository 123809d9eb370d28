import { createBatcher } from "../batcher.js";
import { prepared, type Knex, type Migration } from "../db.js";

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
  {
    name: "core/0004_hmac_refusal_repeats",
    async up(db) {
      await db.schema.alterTable("hmac_refusals", (t) => {
        t.integer("repeats").notNullable().defaultTo(0).comment("further identical refusals within a minute of `at`, counted here instead of a row each");
        t.timestamp("last_at", { useTz: true });
      });
    },
  },
];

/** How long the refusal audit trail is kept. */
export const refusalRetentionDays = 90;

/**
 * Records a refusal in the audit trail (never the signature or a secret: there is no column for
 * them). A refusal like one recorded within the last minute (same reason, caller, procedure and
 * address) counts on that row (`repeats`, `last_at`) instead of adding one: a flood of forged
 * requests cannot fill the disk (500 of them made 250 rows in 1.7 s).
 */
export async function recordRefusal(
  db: Knex,
  event: { reason: string; callerId?: string; procedure: string; requestId: string; peer?: string },
): Promise<void> {
  const procedure = event.procedure.slice(0, 300);
  const { rows } = await db.raw(
    `update hmac_refusals set repeats = repeats + 1, last_at = now()
      where id = (select id from hmac_refusals
                   where reason = ? and caller_id is not distinct from ? and procedure = ? and peer is not distinct from ?
                     and at > now() - interval '1 minute'
                   order by id desc limit 1)
      returning id`,
    [event.reason, event.callerId ?? null, procedure, event.peer ?? null],
  );
  if (rows.length > 0) return;
  await db("hmac_refusals").insert({
    reason: event.reason,
    caller_id: event.callerId ?? null,
    procedure,
    request_id: event.requestId,
    peer: event.peer ?? null,
  });
}

/** Deletes refusals older than `days`; answers how many. */
export async function purgeRefusals(db: Knex, days: number): Promise<number> {
  return db("hmac_refusals")
    .where("at", "<", db.raw("now() - make_interval(days => ?)", [days]))
    .delete();
}

/**
 * Records a nonce; answers false when (caller, nonce) was already recorded. One statement, so of
 * any number of concurrent attempts — on any replica sharing the database — exactly one is fresh.
 */
export async function recordNonce(db: Knex, callerId: string, nonce: string): Promise<boolean> {
  const inserted = await db("hmac_nonces").insert({ caller_id: callerId, nonce }).onConflict(["caller_id", "nonce"]).ignore().returning("nonce");
  return inserted.length === 1;
}

/**
 * Records many nonces in one statement; answers, per item, whether it was new. A nonce repeated
 * within the batch is new only the first time.
 */
export async function recordNonces(db: Knex, items: ReadonlyArray<{ callerId: string; nonce: string }>): Promise<boolean[]> {
  if (items.length === 0) return [];
  const { rows } = await prepared(
    db.raw(
      `insert into hmac_nonces (caller_id, nonce)
       select caller_id, nonce from unnest(?::text[], ?::text[]) as n(caller_id, nonce)
       on conflict (caller_id, nonce) do nothing
       returning caller_id, nonce`,
      [items.map((i) => i.callerId), items.map((i) => i.nonce)] as unknown as readonly Knex.RawBinding[],
    ),
    "nonces",
  );
  const fresh = new Set((rows as Array<{ caller_id: string; nonce: string }>).map((r) => `${r.caller_id}\n${r.nonce}`));
  return items.map((i) => fresh.delete(`${i.callerId}\n${i.nonce}`));
}

/**
 * Coalesces nonce checks of concurrent signed calls: those that arrive while one statement runs go
 * into the next (no added wait when idle); each call waits for its own answer.
 */
export function createNonceRecorder(db: Knex) {
  const writer = createBatcher<{ callerId: string; nonce: string }, boolean>({ write: (items) => recordNonces(db, items), windowMs: 0, maxItems: 500 });
  return { record: (callerId: string, nonce: string) => writer.write({ callerId, nonce }), stop: () => writer.stop() };
}

/** Deletes nonces older than `olderThanSeconds` (twice the skew window); answers how many. */
export async function purgeNonces(db: Knex, olderThanSeconds: number): Promise<number> {
  return db("hmac_nonces")
    .where("seen_at", "<", db.raw("now() - make_interval(secs => ?)", [olderThanSeconds]))
    .delete();
}
