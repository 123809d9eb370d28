import { test } from "uvu";
import * as assert from "uvu/assert";
import { queryErrorWords } from "../../services/lib/db.js";

test("a failed query is PostgreSQL's words and SQLSTATE, without knex's statement", () => {
  const err = Object.assign(new Error('insert into "x" values ($1) - duplicate key value violates unique constraint "x_pkey"'), { code: "23505" });
  assert.is(queryErrorWords(err), 'duplicate key value violates unique constraint "x_pkey" (23505)');
});

test("something thrown that is not an Error is told by its message, or its kind and keys (not its values), never [object Object]", () => {
  assert.is(queryErrorWords({ message: "socket hang up", code: "ECONNRESET" }), "socket hang up (ECONNRESET)");
  assert.is(queryErrorWords({ code: "ECONNRESET", errno: -104 }), "a thrown Object without a message (keys: code, errno) (ECONNRESET)");
  class Event {
    type = "error";
  }
  assert.is(queryErrorWords(new Event()), "a thrown Event without a message (keys: type)");
  const settings = { connectionString: "postgres://u:secret-pw@db/panel" };
  assert.not.match(queryErrorWords(settings), /secret-pw/, "values are not told");
  assert.is(queryErrorWords(Object.create(null)), "a thrown object without a message");
  assert.is(queryErrorWords("plain text"), "plain text");
  assert.is(queryErrorWords(undefined), "undefined");
});

test.run();
