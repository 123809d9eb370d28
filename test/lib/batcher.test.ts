import knex from "knex";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createBatcher } from "../../services/lib/batcher.js";
import { createDatabase } from "../../services/lib/db.js";
import { createLogger } from "../../services/lib/log.js";
import { createTestDatabase } from "../helpers/database.js";

const quietKnex = { warn() {}, error() {}, deprecate() {}, debug() {} };

test("an item PostgreSQL refuses fails alone: the others of its batch are written", async () => {
  const database = await createTestDatabase("batcher");
  const db = createDatabase(database.url, createLogger({ level: "silent" }));
  try {
    await db.raw("create table readings (value integer not null)");
    const batcher = createBatcher<number, true>({
      // One statement for the whole batch: a value out of integer range fails all of it.
      write: async (items) => {
        await db.raw("insert into readings select unnest(?::bigint[])", [items]);
        return items.map(() => true as const);
      },
      windowMs: 0,
      maxItems: 100,
    });
    const values = [1, 2, 2 ** 40, 3, 4];
    const outcomes = await Promise.allSettled(values.map((v) => batcher.write(v)));
    assert.equal(
      outcomes.map((o) => o.status),
      ["fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled"],
    );
    assert.match(String((outcomes[2] as PromiseRejectedResult).reason), /out of range/);
    assert.equal(
      (await db("readings").orderBy("value")).map((r: { value: number }) => r.value),
      [1, 2, 3, 4],
    );
    await batcher.stop();
  } finally {
    await db.destroy();
    await database.drop();
  }
});

test("a batch that fails for no item's doing (its statement timed out, the pool was taken) fails every item at once, none written alone", async () => {
  const database = await createTestDatabase("batcher_wide");
  // The services' kind of pool, smaller and quicker to give up.
  const db = knex({ client: "pg", connection: database.url, pool: { min: 0, max: 1 }, acquireConnectionTimeout: 200, log: quietKnex });
  try {
    await db.raw("create table readings (value integer not null)");
    let writes = 0;
    let slow = true;
    const batcher = createBatcher<number, true>({
      write: async (items) => {
        writes++;
        await db.transaction(async (trx) => {
          if (slow) await trx.raw("set local statement_timeout = 50; select pg_sleep(1)");
          await trx.raw("insert into readings select unnest(?::int[])", [items]);
        });
        return items.map(() => true as const);
      },
      windowMs: 0,
      maxItems: 100,
    });
    const timedOut = await Promise.allSettled([1, 2, 3, 4, 5].map((v) => batcher.write(v)));
    assert.equal(
      timedOut.map((o) => (o.status === "rejected" ? (o.reason as { code?: string }).code : o.status)),
      ["57014", "57014", "57014", "57014", "57014"],
    );
    assert.is(writes, 1, "one statement, not one more per item");

    // Every connection taken: the pool's acquire timeout fails the batch, once.
    slow = false;
    writes = 0;
    let release!: () => void;
    const held = db.transaction(async (trx) => {
      await trx.raw("select 1");
      await new Promise<void>((resolve) => (release = resolve));
    });
    while (!release) await new Promise((r) => setImmediate(r));
    const starved = await Promise.allSettled([6, 7, 8].map((v) => batcher.write(v)));
    release();
    await held;
    assert.ok(
      starved.every((o) => o.status === "rejected" && /Timeout acquiring a connection/.test(String(o.reason))),
      "each told the pool was taken",
    );
    assert.is(writes, 1);
    // Afterwards items are written as before.
    await Promise.all([9, 10].map((v) => batcher.write(v)));
    assert.equal(
      (await db("readings").orderBy("value")).map((r: { value: number }) => r.value),
      [9, 10],
    );
    await batcher.stop();
  } finally {
    await db.destroy();
    await database.drop();
  }
});

test.run();
