import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { encryptedColumns } from "../../services/crypto/encrypted-columns.js";
import { createKeyring, deriveKey } from "../../services/lib/secrets/keyring.js";
import { pendingRotation } from "../../services/lib/secrets/rotate.js";
import { migrationsFor } from "../../services/host.js";
import { createDatabase, migrateToLatest, type Knex } from "../../services/lib/db.js";
import { makeTempDir, runCli } from "../helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/database.js";
import { newKey, oldKey } from "../helpers/keys.js";
import { captureLogs } from "../helpers/log-capture.js";
import { seedSecrets, type SeededSecrets } from "../helpers/secrets.js";

const test = suite("rotating every stored secret to a new key with `myosicam keys rotate`");

let panel: TestDatabase;
let db: Knex;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
let seeded: SeededSecrets;
const outputs: string[] = [];
const oldId = deriveKey(oldKey).id;
const newId = deriveKey(newKey).id;

const env = (extra: Record<string, string> = {}) => ({
  MYOSICAM_DATA_DIR: join(dir.path, "data"),
  DATABASE_URL: panel.url,
  PANEL_ENCRYPTION_KEY: newKey,
  PANEL_ENCRYPTION_KEY_PREVIOUS: oldKey,
  ...extra,
});

async function rotate(args: string[], extra: Record<string, string> = {}) {
  const cli = runCli(["keys", "rotate", ...args], env(extra));
  const code = await cli.exited;
  outputs.push(cli.stdout(), cli.stderr());
  return { code, stdout: cli.stdout(), stderr: cli.stderr() };
}

async function onKey(keyId: string): Promise<number> {
  const columns = await pendingRotation(db, createKeyring(newKey, oldKey), encryptedColumns);
  return columns.reduce((n, c) => n + (c.byKeyId[keyId] ?? 0), 0);
}

test.before(async () => {
  dir = await makeTempDir("rotation");
  panel = await createTestDatabase("rotation");
  db = createDatabase(panel.url, captureLogs().log);
  await migrateToLatest(db, migrationsFor("panel"));
  seeded = await seedSecrets(db, createKeyring(oldKey), 1000);
});
test.after(async () => {
  await db.destroy();
  await panel.drop();
  await dir.remove();
});

test("--dry-run counts every value on the old key and changes nothing", async () => {
  const result = await rotate(["--dry-run", "--json"]);
  assert.is(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout);
  assert.is(report.toRotate, seeded.size);
  assert.is(await onKey(oldId), seeded.size);
});

test("a rotation killed between batches leaves every value readable, part on each key", async () => {
  const result = await rotate(["--batch-size", "100", "--crash-after-batches", "5"]);
  assert.is(result.code, 128 + 9, "the process was killed");
  assert.is(await onKey(newId), 500, "five committed batches of 100");
  assert.is(await onKey(oldId), seeded.size - 500);
});

test("running it again completes, verifies, and every value decrypts to its original", async () => {
  const result = await rotate(["--batch-size", "100", "--json"]);
  assert.is(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout);
  assert.is(report.ok, true);
  assert.is(report.verification.checked, seeded.size);
  assert.equal(report.failures, []);
  assert.match(result.stderr, /saved_servers\.ssh_credential_encrypted: \d+ re-encrypted, \d+ to go/, "progress per column");
  assert.is(await onKey(oldId), 0, "nothing left on the previous key");

  const keyring = createKeyring(newKey); // the new key alone now opens everything
  let compared = 0;
  for (const c of encryptedColumns) {
    const rows = (await db(c.table).select({ id: c.idColumn, value: c.column }).whereNotNull(c.column)) as Array<{ id: string; value: string }>;
    for (const row of rows) {
      const plaintext = keyring.open(row.value, { table: c.table, column: c.column, rowId: row.id }).plaintext.toString();
      assert.is(plaintext, seeded.get(`${c.table}.${c.column}.${row.id}`));
      compared += 1;
    }
  }
  assert.is(compared, seeded.size);
});

test("a third run has nothing to do and still verifies", async () => {
  const result = await rotate([]);
  assert.is(result.code, 0, result.stderr);
  assert.match(result.stdout, new RegExp(`verified: ${seeded.size} values`));
  assert.match(result.stdout, /you may now remove PANEL_ENCRYPTION_KEY_PREVIOUS/);
});

test("keys status shows zero values on the previous key", async () => {
  const cli = runCli(["keys", "status", "--json"], env());
  assert.is(await cli.exited, 0, cli.stderr());
  const status = JSON.parse(cli.stdout());
  assert.is(status.previousKeyId, oldId);
  for (const c of status.columns) {
    assert.is(c.byKeyId[oldId], undefined);
    assert.is(c.toRotate, 0);
  }
});

test("without the previous key configured, rotate refuses with one line naming it", async () => {
  const cli = runCli(["keys", "rotate"], { ...env(), PANEL_ENCRYPTION_KEY_PREVIOUS: "" });
  assert.is(await cli.exited, 1);
  assert.match(cli.stderr().trim(), /^myosicam: configuration error: PANEL_ENCRYPTION_KEY_PREVIOUS: is not set/);
});

test("a panel started with a key that did not seal the stored secrets refuses to start", async () => {
  const other = "5b2f8c1d9e3a7f604b1c2d3e4f5a69788796a5b4c3d2e1f00f1e2d3c4b5a6978";
  const cli = runCli(["serve", "--services=crypto,panel,agents"], {
    ...env(),
    PANEL_ENCRYPTION_KEY: other,
    PANEL_ENCRYPTION_KEY_PREVIOUS: "",
    PANEL_PORT: "0",
    ADMIN_PORT: "0",
  });
  assert.is(await cli.exited, 1);
  assert.match(cli.stderr(), new RegExp(`PANEL_ENCRYPTION_KEY: stored secrets are sealed with key ${newId}`));
});

test("no plaintext and no key appears in anything the commands printed", () => {
  const text = outputs.join("\n");
  for (const secret of [newKey, oldKey, "webif-7-pw", "ssh-42-secret", "settings-smtp", "settings-mailgun"]) {
    assert.not.ok(text.includes(secret), `${secret.slice(0, 12)} leaked`);
  }
});

test.run();
