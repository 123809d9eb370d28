import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { soloServiceDeps } from "../helpers/service-deps.js";
import { cryptoRoutes } from "../../services/crypto/index.js";
import { createKeyring, deriveKey } from "../../services/lib/secrets/keyring.js";
import { migrationsFor } from "../../services/host.js";
import { loadConfig } from "../../services/lib/config.js";
import { createDatabase, migrateToLatest, type Knex } from "../../services/lib/db.js";
import { createRequestContextInterceptor } from "../../services/lib/request-context.js";
import { createTestDatabase, type TestDatabase } from "../helpers/database.js";
import { newKey, oldKey } from "../helpers/keys.js";
import { captureLogs } from "../helpers/log-capture.js";
import { seedSecrets } from "../helpers/secrets.js";

const test = suite("CryptoService through a generated client");

const logs = captureLogs();
let panel: TestDatabase;
let db: Knex;

function clientWith(keys: Record<string, string>) {
  const config = loadConfig({ ...keys, MYOSICAM_DATA_DIR: "/nonexistent" });
  const interceptors = [createRequestContextInterceptor(logs.log, new Map([[CryptoService.typeName, "crypto"]])), createValidateInterceptor()];
  const routes = cryptoRoutes(soloServiceDeps({ config, db, log: logs.log }));
  return createClient(CryptoService, createRouterTransport(routes, { router: { interceptors } }));
}
const context = { table: "oscam_installs", column: "webif_password", rowId: "4b1f7a52-9d3e-4c8a-8f61-0d2e3c4b5a69" };
const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );

test.before(async () => {
  panel = await createTestDatabase("crypto_service");
  db = createDatabase(panel.url, logs.log);
  await migrateToLatest(db, migrationsFor("panel"));
});
test.after(async () => {
  await db.destroy();
  await panel.drop();
});

test("Encrypt then Decrypt returns the plaintext and the active key id", async () => {
  const client = clientWith({ PANEL_ENCRYPTION_KEY: newKey });
  const sealed = await client.encrypt({ plaintext: Buffer.from("canary-webif-pw-1"), context });
  assert.is(sealed.keyId, deriveKey(newKey).id);
  const opened = await client.decrypt({ envelope: sealed.envelope, context });
  assert.is(Buffer.from(opened.plaintext).toString(), "canary-webif-pw-1");
  assert.is(opened.sealedWithPreviousKey, false);
});

test("EncryptBatch seals many values in order, each bound to its own row", async () => {
  const client = clientWith({ PANEL_ENCRYPTION_KEY: newKey });
  const items = Array.from({ length: 50 }, (_, i) => ({ plaintext: Buffer.from(`batch-${i}`), context: { ...context, rowId: `row-${i}` } }));
  const { envelopes } = await client.encryptBatch({ items });
  assert.is(envelopes.length, 50);
  for (const [i, envelope] of envelopes.entries()) {
    const opened = await client.decrypt({ envelope, context: { ...context, rowId: `row-${i}` } });
    assert.is(Buffer.from(opened.plaintext).toString(), `batch-${i}`);
  }
  const bad = await codeOf(client.encryptBatch({ items: [{ plaintext: Buffer.from("x") }] }));
  assert.is(bad?.code, Code.InvalidArgument, "each item's context is required");
});

test("DecryptBatch opens many envelopes in order; one moved to another row or not an envelope fails alone, with Decrypt's code", async () => {
  const client = clientWith({ PANEL_ENCRYPTION_KEY: newKey });
  const items = Array.from({ length: 3 }, (_, i) => ({ plaintext: Buffer.from(`open-${i}`), context: { ...context, rowId: `row-${i}` } }));
  const { envelopes } = await client.encryptBatch({ items });
  const { results } = await client.decryptBatch({
    items: [
      { envelope: envelopes[0]!, context: { ...context, rowId: "row-0" } },
      { envelope: envelopes[1]!, context: { ...context, rowId: "row-9" } },
      { envelope: "not an envelope", context },
      { envelope: envelopes[2]!, context: { ...context, rowId: "row-2" } },
    ],
  });
  assert.is(results.length, 4);
  const text = (r: (typeof results)[number]) => (r.result.case === "opened" ? Buffer.from(r.result.value.plaintext).toString() : r.result.value?.code);
  assert.equal(results.map(text), ["open-0", "data_loss", "invalid_argument", "open-2"]);
  const bad = await codeOf(client.decryptBatch({ items: [] }));
  assert.is(bad?.code, Code.InvalidArgument, "an empty batch is refused");
});

test("given the stored envelope, an unchanged value keeps it; a changed value, another row or the previous key gets a fresh one", async () => {
  const client = clientWith({ PANEL_ENCRYPTION_KEY: newKey });
  const stored = (await client.encrypt({ plaintext: Buffer.from("same-value"), context })).envelope;
  const again = await client.encryptBatch({ items: [{ plaintext: Buffer.from("same-value"), context, current: stored }] });
  assert.is(again.envelopes[0], stored, "unchanged: the stored envelope comes back");
  const changed = (await client.encrypt({ plaintext: Buffer.from("same-valuE"), context, current: stored })).envelope;
  assert.is.not(changed, stored);
  const otherRow = { ...context, rowId: "row-2" };
  const moved = (await client.encrypt({ plaintext: Buffer.from("same-value"), context: otherRow, current: stored })).envelope;
  assert.is.not(moved, stored, "an envelope of another row is not reused");
  assert.is(Buffer.from((await client.decrypt({ envelope: moved, context: otherRow })).plaintext).toString(), "same-value");
  assert.is.not((await client.encrypt({ plaintext: Buffer.from("x"), context, current: "not an envelope" })).envelope, "not an envelope");
  const rotated = clientWith({ PANEL_ENCRYPTION_KEY: oldKey, PANEL_ENCRYPTION_KEY_PREVIOUS: newKey });
  const resealed = (await rotated.encrypt({ plaintext: Buffer.from("same-value"), context, current: stored })).envelope;
  assert.is.not(resealed, stored, "sealed with the previous key: replaced, so a rotation moves it forward");
});

test("a malformed envelope is InvalidArgument; a wrong row is DataLoss; an unknown key is FailedPrecondition naming it", async () => {
  const client = clientWith({ PANEL_ENCRYPTION_KEY: newKey });
  assert.is((await codeOf(client.decrypt({ envelope: "hunter2", context })))?.code, Code.InvalidArgument);
  const sealed = await client.encrypt({ plaintext: Buffer.from("canary-webif-pw-2"), context });
  const moved = await codeOf(client.decrypt({ envelope: sealed.envelope, context: { ...context, rowId: "other-row" } }));
  assert.is(moved?.code, Code.DataLoss);
  const foreign = createKeyring(oldKey).seal(Buffer.from("canary-webif-pw-3"), context);
  const unknown = await codeOf(client.decrypt({ envelope: foreign, context }));
  assert.is(unknown?.code, Code.FailedPrecondition);
  assert.ok(unknown?.rawMessage.includes(deriveKey(oldKey).id), unknown?.rawMessage);
});

test("sealing for a column that is not in the registry of encrypted columns is refused, naming it", async () => {
  const client = clientWith({ PANEL_ENCRYPTION_KEY: newKey });
  const err = await codeOf(client.encrypt({ plaintext: Buffer.from("x"), context: { ...context, column: "webif_pass" } }));
  assert.is(err?.code, Code.InvalidArgument);
  assert.match(err!.rawMessage, /oscam_installs\.webif_pass is not a registered encrypted column/);
});

test("a request without its context is refused by validation, naming the field", async () => {
  const client = clientWith({ PANEL_ENCRYPTION_KEY: newKey });
  const err = await codeOf(client.encrypt({ plaintext: Buffer.from("x") }));
  assert.is(err?.code, Code.InvalidArgument);
  assert.match(err!.rawMessage, /context/);
});

test("KeyStatus counts stored values per column and key id", async () => {
  await seedSecrets(db, createKeyring(oldKey), 3);
  const status = await clientWith({ PANEL_ENCRYPTION_KEY: newKey, PANEL_ENCRYPTION_KEY_PREVIOUS: oldKey }).keyStatus({});
  assert.is(status.activeKeyId, deriveKey(newKey).id);
  assert.is(status.previousKeyId, deriveKey(oldKey).id);
  const count = (table: string, column: string) =>
    status.columns.find((c) => c.table === table && c.column === column && c.keyId === deriveKey(oldKey).id)?.count;
  assert.is(count("saved_servers", "ssh_credential_encrypted"), 3n);
  assert.is(count("email_settings", "smtp_password"), 1n);
});

test("no plaintext or key reached any log line", () => {
  const text = logs.text();
  assert.ok(text.length > 0, "there were log lines");
  for (const secret of ["canary-webif-pw-1", "canary-webif-pw-2", "canary-webif-pw-3", newKey, oldKey]) {
    assert.not.ok(text.includes(secret), `${secret.slice(0, 12)}… leaked`);
  }
});

test.run();
