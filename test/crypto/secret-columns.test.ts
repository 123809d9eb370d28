import { suite } from "uvu";
import * as assert from "uvu/assert";
import { encryptedColumns, hashedColumns } from "../../services/crypto/encrypted-columns.js";
import { secretColumnPattern } from "../../services/lib/secrets/columns.js";
import { migrationsFor } from "../../services/host.js";
import { createDatabase, migrateToLatest, type Knex } from "../../services/lib/db.js";
import { createTestDatabase, type TestDatabase } from "../helpers/database.js";
import { captureLogs } from "../helpers/log-capture.js";

const test = suite("every secret-looking column is registered as encrypted or hashed");

let panel: TestDatabase;
let db: Knex;
test.before(async () => {
  panel = await createTestDatabase("secret_columns");
  db = createDatabase(panel.url, captureLogs().log);
  await migrateToLatest(db, migrationsFor("panel"));
});
test.after(async () => {
  await db.destroy();
  await panel.drop();
});

test("after all panel migrations, no column named like a secret is missing from the registry", async () => {
  const columns = (await db("information_schema.columns")
    .select({ table: "table_name", column: "column_name" })
    .where("table_schema", "public")) as Array<{ table: string; column: string }>;
  const registered = new Set([...encryptedColumns, ...hashedColumns].map((c) => `${c.table}.${c.column}`));
  const forgotten = columns.filter((c) => secretColumnPattern.test(c.column) && !registered.has(`${c.table}.${c.column}`));
  assert.equal(forgotten, [], "register these in services/crypto/encrypted-columns.ts (encryptedColumns or hashedColumns)");
});

test("every registered column exists, with its id column", async () => {
  for (const c of encryptedColumns) {
    assert.ok(await db.schema.hasColumn(c.table, c.column), `${c.table}.${c.column}`);
    assert.ok(await db.schema.hasColumn(c.table, c.idColumn), `${c.table}.${c.idColumn}`);
  }
});

test("the check notices a forgotten column", () => {
  assert.ok(secretColumnPattern.test("smtp_password"));
  assert.ok(secretColumnPattern.test("client_secret"));
  assert.ok(secretColumnPattern.test("mailgun_api_key"));
  assert.ok(secretColumnPattern.test("ssh_credential_encrypted"));
  assert.not.ok(secretColumnPattern.test("smtp_username"));
});

test.run();
