/**
 * Crypto benchmark: encrypt+decrypt pairs through the in-process CryptoService (generated client,
 * in-memory Connect transport, the same interceptors as production) against raw node:crypto
 * AES-256-GCM in the same run; then key rotation rows/second on an embedded PostgreSQL.
 *
 *   npm run bench -- crypto            (BENCH_PAIRS=20000 BENCH_ROWS=20000 to change sizes)
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { CryptoService } from "../gen/myosicam/crypto/v1/crypto_pb.js";
import { soloServiceDeps } from "../test/helpers/service-deps.js";
import { encryptedColumns } from "../services/crypto/encrypted-columns.js";
import { cryptoRoutes } from "../services/crypto/index.js";
import { createKeyring } from "../services/lib/secrets/keyring.js";
import { rotateSecrets } from "../services/lib/secrets/rotate.js";
import { migrationsFor } from "../services/host.js";
import { loadConfig } from "../services/lib/config.js";
import { generateKeyHex } from "../services/lib/config-file.js";
import { createDatabase, migrateToLatest } from "../services/lib/db.js";
import { startEmbeddedPostgres } from "../services/lib/embedded-postgres.js";
import { createLogger } from "../services/lib/log.js";
import { createRequestContextInterceptor } from "../services/lib/request-context.js";
import { seedSecrets } from "../test/helpers/secrets.js";
import { stopAfter } from "./lib/deadline.js";

stopAfter("crypto", 5);

const pairs = Number(process.env.BENCH_PAIRS ?? 10_000);
const rows = Number(process.env.BENCH_ROWS ?? 10_000);
const log = createLogger({ level: "silent" });
const oldKey = generateKeyHex();
const newKey = generateKeyHex();
const plaintext = Buffer.from("a typical secret: 24 bytes");
const context = { table: "saved_servers", column: "ssh_credential_encrypted", rowId: "4b1f7a52-9d3e-4c8a-8f61-0d2e3c4b5a69" };

function rate(count: number, startNs: bigint): number {
  return count / (Number(process.hrtime.bigint() - startNs) / 1e9);
}

async function rawPairsPerSecond(): Promise<number> {
  const key = randomBytes(32);
  const aad = Buffer.from("aad");
  const start = process.hrtime.bigint();
  for (let i = 0; i < pairs; i++) {
    const nonce = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", key, nonce);
    c.setAAD(aad);
    const ct = Buffer.concat([c.update(plaintext), c.final()]);
    const d = createDecipheriv("aes-256-gcm", key, nonce);
    d.setAAD(aad);
    d.setAuthTag(c.getAuthTag());
    Buffer.concat([d.update(ct), d.final()]);
  }
  return rate(pairs, start);
}

/** Pairs per second one call at a time, and values per second sealed through EncryptBatch. */
async function serviceRates(db: import("knex").Knex): Promise<{ pairs: number; batch: number }> {
  const config = loadConfig({ PANEL_ENCRYPTION_KEY: newKey });
  const interceptors = [createRequestContextInterceptor(log, new Map([[CryptoService.typeName, "crypto"]])), createValidateInterceptor()];
  const routes = cryptoRoutes(soloServiceDeps({ config, db, log }));
  const client = createClient(CryptoService, createRouterTransport(routes, { router: { interceptors } }));
  for (let i = 0; i < 200; i++) await client.decrypt({ envelope: (await client.encrypt({ plaintext, context })).envelope, context }); // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < pairs; i++) {
    const { envelope } = await client.encrypt({ plaintext, context });
    await client.decrypt({ envelope, context });
  }
  const pairRate = rate(pairs, start);
  const batch = Array.from({ length: 1000 }, () => ({ plaintext, context }));
  const batchStart = process.hrtime.bigint();
  for (let i = 0; i < pairs / batch.length; i++) await client.encryptBatch({ items: batch });
  return { pairs: pairRate, batch: rate(pairs, batchStart) };
}

const root = await mkdtemp(join(tmpdir(), "myosicam-bench-"));
await chmod(root, 0o711);
const postgres = await startEmbeddedPostgres({ directory: join(root, "pg"), port: 0, log });
try {
  await postgres.ensureDatabase("bench");
  const db = createDatabase(postgres.url("bench"), log);
  await migrateToLatest(db, migrationsFor("panel"));

  const raw = await rawPairsPerSecond();
  const { pairs: service, batch: batchRate } = await serviceRates(db);
  console.log(`encrypt+decrypt pairs/s  raw node:crypto ${raw.toFixed(0)}  in-process CryptoService ${service.toFixed(0)}`);
  console.log(`ratio service/raw        ${(service / raw).toFixed(3)}  (${pairs} pairs each; one in-process call costs ~${(1e6 / service / 2).toFixed(0)} µs)`);
  console.log(`EncryptBatch of 1000     ${batchRate.toFixed(0)} values/s sealed (encrypt only)`);

  const perTable = Math.max(1, Math.floor(rows / 4));
  const seeded = await seedSecrets(db, createKeyring(oldKey), perTable);
  const start = process.hrtime.bigint();
  const report = await rotateSecrets({ db, keyring: createKeyring(newKey, oldKey), columns: encryptedColumns, batchSize: 500 });
  const rotated = report.columns.reduce((n, c) => n + c.rotated, 0);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(
    `rotation                 ${rotated} of ${seeded.size} values in ${seconds.toFixed(2)} s = ${(rotated / seconds).toFixed(0)} rows/s (batches of 500, verification included)`,
  );
  await db.destroy();
} finally {
  await postgres.stop();
  await rm(root, { recursive: true, force: true });
}
