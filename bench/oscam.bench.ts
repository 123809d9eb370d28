/**
 * OScam benchmarks: parse + snapshot of a 10,000-account oscam.user (target ≤ 150 ms), panel
 * ingest of a 2,000-account snapshot (target ≤ 100 ms), and the agent's RSS while idle after its
 * first sync (target ≤ 60 MB; the bundled artifact, `npm run build:agent` first).
 *
 *   npm run bench -- oscam      (BENCH_AGENT_NODE_FLAGS="--max-semi-space-size=1" to try V8 flags on the agent)
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createClient } from "@connectrpc/connect";
import { CryptoService } from "../gen/myosicam/crypto/v1/crypto_pb.js";
import { createResourceSampler } from "../agent/discovery/resources.js";
import { parseOscamFile } from "../agent/oscam/document.js";
import { readUserFile } from "../agent/oscam/user-file.js";
import { registerAgent } from "../agent/register.js";
import { buildSnapshot } from "../agent/snapshot.js";
import { createInstallToken } from "../services/agents/install-tokens.js";
import { storeSync } from "../services/agents/sync.js";
import { selectServices } from "../services/index.js";
import { startHost } from "../services/host.js";
import { loadConfig } from "../services/lib/config.js";
import { generateKeyHex } from "../services/lib/config-file.js";
import { createDatabase } from "../services/lib/db.js";
import { startEmbeddedPostgres } from "../services/lib/embedded-postgres.js";
import { licenseKeyHash, writeLicenseAnswer } from "../services/lib/licensing/store.js";
import { createLogger } from "../services/lib/log.js";

const log = createLogger({ level: "silent" });
const repo = resolve(import.meta.dirname, "..");

function accountsFile(n: number): string {
  let text = "# generated\n";
  for (let i = 0; i < n; i++) text += `\n[account]\nuser = user${i}\npwd = pw-${i}-xyz\ngroup = ${(i % 8) + 1}\ncaid = 0963,098C\nident = 0963:000000;098C:000000\nexpdate = 2030-12-31\ndescription = box ${i}\n`;
  return text;
}

async function timed<T>(runs: number, fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  let value!: T;
  await fn(); // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < runs; i++) value = await fn();
  return { ms: Number(process.hrtime.bigint() - start) / 1e6 / runs, value };
}

const root = await mkdtemp(join(tmpdir(), "myosicam-bench-"));
await chmod(root, 0o711);
const postgres = await startEmbeddedPostgres({ directory: join(root, "pg"), port: 0, log });
try {
  // 1. Parse + snapshot of 10,000 accounts.
  const big = join(root, "big");
  await mkdir(big, { recursive: true });
  await cp(join(repo, "test/fixtures/oscam/main/oscam.conf"), join(big, "oscam.conf"));
  await cp(join(repo, "test/fixtures/oscam/main/oscam.server"), join(big, "oscam.server"));
  await writeFile(join(big, "oscam.user"), accountsFile(10_000));
  const sampler = createResourceSampler();
  const instance = {
    name: "big", configDir: big, tempDir: join(root, "tmp"), pidFile: join(root, "none.pid"), sources: ["configured" as const],
    files: { conf: true, user: true, server: true }, running: false, webif: { enabled: true, host: "127.0.0.1", port: 8888, ssl: false }, problems: [],
  };
  const parse = await timed(5, async () => readUserFile(parseOscamFile(await readFile(join(big, "oscam.user")), "oscam.user")).accounts.length);
  const snap = await timed(5, () => buildSnapshot(instance, sampler));
  console.log(`10,000 accounts: parse ${parse.ms.toFixed(1)} ms, parse + snapshot ${snap.ms.toFixed(1)} ms (target ≤ 150 ms)`);

  // 2. Panel ingest of 2,000 accounts (sealed through the crypto service in one batch).
  await postgres.ensureDatabase("panel");
  const licenseKey = "mlk_bench_license_key_00000000";
  const config = loadConfig({
    MYOSICAM_DATA_DIR: root, DATABASE_URL: postgres.url("panel"), PANEL_PORT: "0", ADMIN_PORT: "0",
    PANEL_ENCRYPTION_KEY: generateKeyHex(), PANEL_LICENSE_KEY: licenseKey, LOG_LEVEL: "silent",
  });
  const host = await startHost(config, selectServices(["crypto", "jobs", "agents"]), log);
  const db = createDatabase(postgres.url("panel"), log);
  await writeLicenseAnswer(db, licenseKeyHash(licenseKey), { valid: true, state: "active", quotas: { maxServers: 0, maxInstances: 0 }, message: "", usage: { servers: 0, instances: 0 } }, new Date());
  const serverId = randomUUID();
  await db("servers").insert({ id: serverId, name: "bench", created_by: "bench", status: "online" });
  const mid = join(root, "mid");
  await mkdir(mid, { recursive: true });
  await writeFile(join(mid, "oscam.user"), accountsFile(2000));
  const midSnap = (await buildSnapshot({ ...instance, name: "mid", configDir: mid }, sampler)).snapshot;
  const crypto = createClient(CryptoService, host.transportFor(CryptoService));
  const ingest = await timed(5, () => storeSync(db, crypto, serverId, { $typeName: "myosicam.agent.v1.SyncRequest", present: [midSnap.ref!], snapshots: [midSnap] }));
  console.log(`panel ingest of a 2,000-account snapshot: ${ingest.ms.toFixed(1)} ms (target ≤ 100 ms)`);

  // 3. The agent's RSS while idle, after its first sync: the bundled artifact against this panel.
  const artifact = join(repo, "dist/agent/myosicam-agent-linux-x64");
  if (!existsSync(artifact)) {
    console.log("agent idle RSS: skipped (run `npm run build:agent` first)");
  } else {
    const { token } = await createInstallToken(db, { server: "bench-agent", createdBy: "bench" });
    const stateDir = join(root, "agent-state");
    await registerAgent({ panelUrl: host.listeners[0]!.url, installToken: token, pin: host.tls.fingerprint, stateDir, log, oscamDirs: [join(repo, "test/fixtures/oscam/main")] });
    const child = spawn(process.execPath, [...(process.env.BENCH_AGENT_NODE_FLAGS ?? "").split(" ").filter(Boolean), artifact, "run", "--state-dir", stateDir, "--unit-dir", join(root, "no-units")], { stdio: ["ignore", "ignore", "pipe"], env: { LOG_LEVEL: "info" } });
    let err = "";
    child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
    const deadline = Date.now() + 30_000;
    while (!err.includes("synced with the panel") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 3000)); // idle after the sync
    const status = await readFile(`/proc/${child.pid}/status`, "utf8").catch(() => "");
    const rss = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0) / 1024;
    child.kill("SIGTERM");
    console.log(`agent idle RSS after its first sync: ${rss.toFixed(0)} MB (target ≤ 60 MB)${err.includes("synced") ? "" : " — it never synced"}`);
  }
  await db.destroy();
  await host.stop();
} finally {
  await postgres.stop();
  await rm(root, { recursive: true, force: true });
}
