import { Code, ConnectError, createClient, createRouterTransport, type ConnectRouter } from "@connectrpc/connect";
import knex, { type Knex } from "knex";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { RegistrationService } from "../../gen/myosicam/agent/v1/registration_pb.js";
import { createRequestContextInterceptor } from "../../services/lib/request-context.js";
import { createTestDatabase, type TestDatabase } from "../helpers/database.js";
import { captureLogs } from "../helpers/log-capture.js";

const test = suite("a call that fails in PostgreSQL is logged in PostgreSQL's words, without the statement");

const quietKnex = { warn() {}, error() {}, deprecate() {}, debug() {} };
let database: TestDatabase;
let db: Knex;

test.before(async () => {
  database = await createTestDatabase("query_error_log");
  db = knex({ client: "pg", connection: database.url, pool: { min: 0, max: 4 }, log: quietKnex });
  await db.raw("create table counters (id int primary key, hits int not null)");
  await db("counters").insert([
    { id: 1, hits: 0 },
    { id: 2, hits: 0 },
  ]);
});
test.after(async () => {
  await db.destroy();
  await database.drop();
});

/** Two transactions that take the two rows in opposite orders: PostgreSQL ends one of them (40P01). */
async function deadlock(): Promise<never> {
  let bothHold!: () => void;
  let held = 0;
  const barrier = new Promise<void>((resolve) => (bothHold = resolve));
  const bump = (first: number, second: number) =>
    db.transaction(async (trx) => {
      await trx.raw("update counters set hits = hits + 1 where id = ?", [first]);
      if (++held === 2) bothHold();
      await barrier;
      await trx.raw("update counters set hits = hits + 1 where id = ?", [second]);
    });
  const outcomes = await Promise.allSettled([bump(1, 2), bump(2, 1)]);
  const failed = outcomes.find((o) => o.status === "rejected");
  if (!failed) throw new Error("the two transactions were expected to deadlock");
  throw failed.reason;
}

/** Calls a Register whose handler is `register`, through the request-context interceptor: the error and the logs. */
async function callLogged(register: () => Promise<object>) {
  const logs = captureLogs();
  const routes = (router: ConnectRouter) => router.service(RegistrationService, { register });
  const interceptors = [createRequestContextInterceptor(logs.log, new Map([[RegistrationService.typeName, "agents"]]))];
  const client = createClient(RegistrationService, createRouterTransport(routes, { router: { interceptors } }));
  const err = await client.register({}).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  return { err, logs };
}

test("a deadlocked call is told to try again, and the log names the deadlock and its locks, not knex's statement", async () => {
  const { err, logs } = await callLogged(deadlock);
  assert.is(err?.code, Code.Aborted);
  assert.is(err?.rawMessage, "conflicting concurrent change; try again");
  const line = logs.lines().find((l) => l.msg === "rpc aborted by a conflicting change");
  assert.ok(line, logs.text());
  assert.is(line.level, 40, "a warning: the caller tries again");
  const logged = line.err as { message: string; detail: string };
  assert.is(logged.message, "deadlock detected (40P01)");
  assert.match(logged.detail, /waits for ShareLock on transaction/);
  assert.not.match(logs.text(), /update counters/, "the statement is not logged");
});

test("any other failed query is an error in PostgreSQL's words with its code", async () => {
  const { err, logs } = await callLogged(async () => {
    await db.raw("select hits from counters where id = ? and missing_column = 1", [1]);
    return {};
  });
  assert.is(err?.code, Code.Internal);
  const line = logs.lines().find((l) => l.msg === "rpc failed");
  assert.ok(line, logs.text());
  assert.is((line.err as { message: string }).message, 'column "missing_column" does not exist (42703)');
  assert.not.match(logs.text(), /select hits/, "the statement is not logged");
});

test.run();
