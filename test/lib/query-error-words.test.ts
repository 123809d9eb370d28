import { test } from "uvu";
import * as assert from "uvu/assert";
import { queryErrorWords } from "../../services/lib/db.js";

test("a failed query is PostgreSQL's words and SQLSTATE, without knex's statement", () => {
  const err = Object.assign(new Error('insert into "x" values ($1) - duplicate key value violates unique constraint "x_pkey"'), { code: "23505" });
  assert.is(queryErrorWords(err), 'duplicate key value violates unique constraint "x_pkey" (23505)');
});

test("something thrown that is not an Error is told by its message or contents, never [object Object]", () => {
  assert.is(queryErrorWords({ message: "socket hang up", code: "ECONNRESET" }), "socket hang up (ECONNRESET)");
  assert.is(queryErrorWords({ code: "ECONNRESET", errno: -104 }), '{"code":"ECONNRESET","errno":-104} (ECONNRESET)');
  class Event {
    type = "error";
  }
  assert.is(queryErrorWords(new Event()), 'Event {"type":"error"}');
  const circular: Record<string, unknown> = {};
  circular.self = circular;
  assert.is(queryErrorWords(circular), "{self}");
  assert.is(queryErrorWords("plain text"), "plain text");
  assert.is(queryErrorWords(undefined), "undefined");
  assert.ok(queryErrorWords({ long: "x".repeat(1000) }).length <= 301);
});

test.run();
