/**
 * HMAC benchmark: unary calls per second to the same handler over real HTTPS/HTTP2, signed (gate,
 * signature, nonce insert in PostgreSQL) versus unsigned, in the same run; then the cost of the
 * nonce check alone under 8 concurrent clients.
 *
 *   npm run bench -- hmac            (BENCH_CALLS=4000 BENCH_CONCURRENCY=8 to change sizes)
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { LicenseService } from "../gen/myosicam/license/v1/license_pb.js";
import { migrationsFor } from "../services/host.js";
import { createDatabase, migrateToLatest } from "../services/lib/db.js";
import { startEmbeddedPostgres } from "../services/lib/embedded-postgres.js";
import { recordNonce } from "../services/lib/hmac/nonce-store.js";
import { createSignedTransport } from "../services/lib/hmac/signing-client.js";
import { createLogger } from "../services/lib/log.js";
import { loadTlsIdentity } from "../services/lib/tls.js";
import { startSignedServer, type TestTrust } from "../test/helpers/signed-server.js";
import { stopAfter } from "./lib/deadline.js";

stopAfter("hmac", 10);

const calls = Number(process.env.BENCH_CALLS ?? 4000);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 8);
const log = createLogger({ level: "silent" });
const secret = randomBytes(32).toString("hex");

/** Runs `calls` calls spread over `concurrency` loops; answers calls per second. */
async function callsPerSecond(call: () => Promise<unknown>): Promise<number> {
  let next = 0;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < calls) await call();
    }),
  );
  return calls / (Number(process.hrtime.bigint() - start) / 1e9);
}

const root = await mkdtemp(join(tmpdir(), "myosicam-bench-"));
await chmod(root, 0o711);
const postgres = await startEmbeddedPostgres({ directory: join(root, "pg"), port: 0, log });
try {
  await postgres.ensureDatabase("bench");
  const db = createDatabase(postgres.url("bench"), log, 20);
  await migrateToLatest(db, migrationsFor("admin"));
  const tls = await loadTlsIdentity({ dataDir: root });
  const trust: TestTrust = {
    callers: new Map([["panel", { id: "panel", active: true, secrets: [secret], allowedProcedures: ["/myosicam.license.v1.LicenseService/*"] }]]),
    clock: { offsetSeconds: 0 },
    refusals: [],
  };
  const signedServer = await startSignedServer(db, tls, log, trust, true);
  const plainServer = await startSignedServer(db, tls, log, trust, false);
  const client = (transport: Transport) => createClient(LicenseService, transport);
  const signed = client(createSignedTransport({ baseUrl: signedServer.url, credentials: { callerId: "panel", secret }, ca: tls.cert }));
  const plain = client(createConnectTransport({ baseUrl: plainServer.url, httpVersion: "2", nodeOptions: { ca: tls.cert } }));

  for (let i = 0; i < 200; i++) await Promise.all([signed.getPlanCatalog({}), plain.getPlanCatalog({})]); // warm-up
  const unsignedRate = await callsPerSecond(() => plain.getPlanCatalog({}));
  const signedRate = await callsPerSecond(() => signed.getPlanCatalog({}));
  console.log(`unary calls/s over HTTPS/2, ${concurrency} concurrent  unsigned ${unsignedRate.toFixed(0)}  signed ${signedRate.toFixed(0)}`);
  console.log(`ratio signed/unsigned    ${(signedRate / unsignedRate).toFixed(3)}  (goal ≥ 0.7)`);

  const nonceRate = await callsPerSecond(() => recordNonce(db, "panel", randomBytes(16).toString("hex")));
  console.log(`nonce check (insert, ${concurrency} concurrent)  ${nonceRate.toFixed(0)}/s = ${((1000 / nonceRate) * concurrency).toFixed(2)} ms each`);
  // The trade-off DESIGN leaves open: without waiting for the WAL flush, a database crash could
  // forget the nonces of the last few hundred milliseconds.
  const asyncDb = createDatabase(`${postgres.url("bench")}?options=${encodeURIComponent("-c synchronous_commit=off")}`, log, 20);
  const asyncRate = await callsPerSecond(() => recordNonce(asyncDb, "panel", randomBytes(16).toString("hex")));
  console.log(`  same with synchronous_commit=off  ${asyncRate.toFixed(0)}/s (${(asyncRate / nonceRate).toFixed(1)}×)`);
  await asyncDb.destroy();

  await signedServer.close(5000);
  await plainServer.close(5000);
  await db.destroy();
} finally {
  await postgres.stop();
  await rm(root, { recursive: true, force: true });
}
