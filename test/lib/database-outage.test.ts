import { Code } from "@connectrpc/connect";
import knex from "knex";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createDatabaseOutage } from "../../services/lib/database-outage.js";
import { toConnectError } from "../../services/lib/errors.js";
import { freePort } from "../../services/lib/embedded-postgres.js";
import { createTestDatabase } from "../helpers/database.js";
import { captureLogs } from "../helpers/log-capture.js";

const quietKnex = { warn() {}, error() {}, deprecate() {}, debug() {} };

/** The error a query fails with, as a handler's caller would get it (translated, the original as its cause). */
async function refusal(query: Promise<unknown>) {
  try {
    await query;
  } catch (err) {
    return toConnectError(err);
  }
  throw new Error("the query was expected to fail");
}

test("a pool whose every connection stays busy is reported as such, with the pool's figures and knex's own words", async () => {
  const database = await createTestDatabase("outage_pool");
  // The same pool as the services', only smaller; it gives up quickly once its connection is held
  // (not before: opening that connection took over 300 ms on a busy CI machine, and the
  // transaction holding it was refused instead).
  const db = knex({ client: "pg", connection: database.url, pool: { min: 0, max: 1 }, acquireConnectionTimeout: 30_000, log: quietKnex });
  const logs = captureLogs();
  const outage = createDatabaseOutage({ log: logs.log, databases: [{ name: "panel", db }] });
  let release!: () => void;
  const held = db.transaction(async (trx) => {
    await trx.raw("select 1");
    await new Promise<void>((resolve) => (release = resolve));
  });
  try {
    // The only connection is taken once the transaction's first query has run.
    while (!release) await new Promise((r) => setImmediate(r));
    (db.client as { pool: { acquireTimeoutMillis: number } }).pool.acquireTimeoutMillis = 300;
    const err = await refusal(db.raw("select 2"));
    assert.equal(err.rawMessage, "the database is unavailable right now; try again shortly");
    assert.ok(outage.notice(err));
    const [warning] = logs.lines().filter((l) => l.level === 40);
    assert.match(String(warning?.msg), /^every database connection stayed busy/);
    assert.match(String(warning?.reason), /^Knex: Timeout acquiring a connection/);
    assert.equal(warning?.pools, [{ database: "panel", used: 1, free: 0, opening: 0, waiting: 0, size: 1 }]);
  } finally {
    release?.();
    await held;
    outage.stop();
    await db.destroy();
    await database.drop();
  }
});

test("a database that cannot be reached is reported with the connection's own error, not its translation", async () => {
  const port = await freePort();
  const db = knex({ client: "pg", connection: `postgres://nobody:secret@127.0.0.1:${port}/none`, pool: { min: 0, max: 1 }, log: quietKnex });
  const logs = captureLogs();
  const outage = createDatabaseOutage({ log: logs.log, databases: [{ name: "panel", db }], probeIntervalMs: 60_000 });
  try {
    const err = await refusal(db.raw("select 1"));
    assert.ok(outage.notice(err));
    const [warning] = logs.lines().filter((l) => l.level === 40);
    assert.match(String(warning?.msg), /^the database cannot be reached/);
    assert.match(String(warning?.reason), /ECONNREFUSED/);
    assert.not.match(logs.text(), /secret/);
  } finally {
    outage.stop();
    await db.destroy();
  }
});

test("a statement PostgreSQL cannot take (past 65,535 parameters) is an internal error, not an outage", async () => {
  const database = await createTestDatabase("outage_protocol");
  const db = knex({ client: "pg", connection: database.url, pool: { min: 0, max: 1 }, log: quietKnex });
  const logs = captureLogs();
  const outage = createDatabaseOutage({ log: logs.log, databases: [{ name: "panel", db }] });
  try {
    await db.raw("create table pairs (a integer, b integer)");
    const err = await refusal(db("pairs").insert(Array.from({ length: 40_000 }, (_, i) => ({ a: i, b: i }))));
    assert.is(err.code, Code.Internal);
    assert.is((err.cause as { code?: string }).code, "08P01");
    assert.not.ok(outage.notice(err));
    assert.is(logs.lines().length, 0);
    assert.ok(outage.notice(await refusal(db.raw("select pg_terminate_backend(pg_backend_pid())"))), "a connection that is cut is an outage");
  } finally {
    outage.stop();
    await db.destroy();
    await database.drop();
  }
});

test.run();
