import { test } from "uvu";
import * as assert from "uvu/assert";
import { createBatcher } from "../../services/lib/batcher.js";
import { createDatabase } from "../../services/lib/db.js";
import { createLogger } from "../../services/lib/log.js";
import { createTestDatabase } from "../helpers/database.js";

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

test.run();
