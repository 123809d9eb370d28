import { test } from "uvu";
import * as assert from "uvu/assert";
import { loadConfig } from "../../services/lib/config.js";
import { openDatabases } from "../../services/lib/databases.js";
import { poolState } from "../../services/lib/db.js";
import { createLogger } from "../../services/lib/log.js";
import { createTestDatabase } from "../helpers/database.js";
import { makeTempDir } from "../helpers/cli.js";

test("DATABASE_POOL_SIZE is the size of the pool the process opens on its database", async () => {
  const database = await createTestDatabase("pool_size");
  const dir = await makeTempDir("pool-size");
  const config = loadConfig({ MYOSICAM_DATA_DIR: dir.path, DATABASE_URL: database.url, DATABASE_POOL_SIZE: "25" });
  const databases = await openDatabases(config, ["panel"], createLogger({ level: "silent" }));
  try {
    const panel = databases.get("panel");
    // Hold more connections than the default pool has: all of them are open at once.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let holding = 0;
    const held = Array.from({ length: 20 }, () =>
      panel.transaction(async (trx) => {
        await trx.raw("select 1");
        if (++holding === 20) release();
        await released;
      }),
    );
    await Promise.all(held);
    assert.is(holding, 20);
    assert.equal(poolState(panel)?.size, 25);
  } finally {
    await databases.close();
    await dir.remove();
    await database.drop();
  }
});

test.run();
