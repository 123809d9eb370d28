import { suite } from "uvu";
import * as assert from "uvu/assert";
import { adminEncryptedColumns, adminHashedColumns } from "../../services/admin/encrypted-columns.js";
import { encryptedColumns, hashedColumns } from "../../services/crypto/encrypted-columns.js";
import { migrationsFor } from "../../services/host.js";
import { createDatabase, migrateToLatest, type Knex } from "../../services/lib/db.js";
import { secretColumnPattern, type EncryptedColumn, type HashedColumn } from "../../services/lib/secrets/columns.js";
import { createTestDatabase, type TestDatabase } from "../helpers/database.js";
import { captureLogs } from "../helpers/log-capture.js";

const test = suite("every secret-looking column is registered as encrypted or hashed");

const registries = {
  panel: { encrypted: encryptedColumns, hashed: hashedColumns, file: "services/crypto/encrypted-columns.ts" },
  admin: { encrypted: adminEncryptedColumns, hashed: adminHashedColumns, file: "services/admin/encrypted-columns.ts" },
} as const;
const databases: Array<{ name: "panel" | "admin"; database: TestDatabase; db: Knex }> = [];

test.before(async () => {
  for (const name of ["panel", "admin"] as const) {
    const database = await createTestDatabase(`secret_columns_${name}`);
    const db = createDatabase(database.url, captureLogs().log);
    await migrateToLatest(db, migrationsFor(name));
    databases.push({ name, database, db });
  }
});
test.after(async () => {
  for (const { db, database } of databases) {
    await db.destroy();
    await database.drop();
  }
});

const columnsOf = async (db: Knex) =>
  (await db("information_schema.columns").select({ table: "table_name", column: "column_name" }).where("table_schema", "public")) as Array<{
    table: string;
    column: string;
  }>;

test("after all migrations of each database, no column named like a secret is missing from its registry", async () => {
  for (const { name, db } of databases) {
    const registry = registries[name];
    const registered = new Set([...registry.encrypted, ...registry.hashed].map((c: EncryptedColumn | HashedColumn) => `${c.table}.${c.column}`));
    const forgotten = (await columnsOf(db)).filter((c) => secretColumnPattern.test(c.column) && !registered.has(`${c.table}.${c.column}`));
    assert.equal(forgotten, [], `register these in ${registry.file} (encrypted or hashed)`);
  }
});

test("every registered column exists, with its id column", async () => {
  for (const { name, db } of databases) {
    const registry = registries[name];
    for (const c of registry.encrypted) {
      assert.ok(await db.schema.hasColumn(c.table, c.column), `${name}: ${c.table}.${c.column}`);
      assert.ok(await db.schema.hasColumn(c.table, c.idColumn), `${name}: ${c.table}.${c.idColumn}`);
    }
    for (const c of registry.hashed) assert.ok(await db.schema.hasColumn(c.table, c.column), `${name}: ${c.table}.${c.column}`);
  }
});

test("the check notices a forgotten column", () => {
  assert.ok(secretColumnPattern.test("smtp_password"));
  assert.ok(secretColumnPattern.test("client_secret"));
  assert.ok(secretColumnPattern.test("mailgun_api_key"));
  assert.ok(secretColumnPattern.test("ssh_credential_encrypted"));
  assert.ok(secretColumnPattern.test("key_hash"));
  assert.not.ok(secretColumnPattern.test("smtp_username"));
});

test.run();
