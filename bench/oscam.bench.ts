/**
 * OScam benchmarks: parse + snapshot of a 10,000-account oscam.user (target ≤ 150 ms), panel
 * ingest of a 2,000-account snapshot (target ≤ 100 ms), and the agent's RSS while idle after its
 * first sync (target ≤ 60 MB; the single executable, `npm run build:agent` first).
 *
 *   npm run bench -- oscam      (BENCH_AGENT_NODE_FLAGS="--max-semi-space-size=1" to try V8 flags on the agent)
 */
import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createClient } from "@connectrpc/connect";
import { CryptoService } from "../gen/myosicam/crypto/v1/crypto_pb.js";
import { createResourceSampler } from "../agent/discovery/resources.js";
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
import { accountsFile, timed } from "./lib/timed.js";
import { owned } from "./lib/owned-children.js";

const log = createLogger({ level: "silent" });
const repo = resolve(import.meta.dirname, "..");

const root = await mkdtemp(join(tmpdir(), "myosicam-bench-"));
await chmod(root, 0o711);
// 1. Parse + snapshot of 10,000 accounts (before PostgreSQL starts, so it does not compete for the cores).
{
  const big = join(root, "big");
  await mkdir(big, { recursive: true });
  await cp(join(repo, "test/fixtures/oscam/main/oscam.conf"), join(big, "oscam.conf"));
  await cp(join(repo, "test/fixtures/oscam/main/oscam.server"), join(big, "oscam.server"));
  await writeFile(join(big, "oscam.user"), accountsFile(10_000));
  const child = spawnSync(process.execPath, ["--import", "tsx", join(import.meta.dirname, "lib/agent-snapshot.ts"), big], { stdio: "inherit" });
  if (child.status !== 0) throw new Error("the parse + snapshot benchmark failed");
}

const postgres = await startEmbeddedPostgres({ directory: join(root, "pg"), port: 0, log });
try {
  // 2. Panel ingest of 2,000 accounts (sealed through the crypto service in one batch): as a new
  // instance, and as the re-sync that follows a change of one account (what an agent sends).
  await postgres.ensureDatabase("panel");
  const licenseKey = "mlk_bench_license_key_00000000";
  const config = loadConfig({
    MYOSICAM_DATA_DIR: root,
    DATABASE_URL: postgres.url("panel"),
    PANEL_PORT: "0",
    ADMIN_PORT: "0",
    PANEL_ENCRYPTION_KEY: generateKeyHex(),
    PANEL_LICENSE_KEY: licenseKey,
    LOG_LEVEL: "silent",
  });
  const host = await startHost(config, selectServices(["crypto", "jobs", "agents", "panel"]), log);
  const db = createDatabase(postgres.url("panel"), log);
  await writeLicenseAnswer(
    db,
    licenseKeyHash(licenseKey),
    { valid: true, state: "active", quotas: { maxServers: 0, maxInstances: 0 }, message: "", usage: { servers: 0, instances: 0 } },
    new Date(),
  );
  const serverId = randomUUID();
  await db("servers").insert({ id: serverId, name: "bench", created_by: "bench", status: "online" });
  const mid = join(root, "mid");
  await mkdir(mid, { recursive: true });
  await writeFile(join(mid, "oscam.user"), accountsFile(2000));
  const sampler = createResourceSampler();
  const midInstance = {
    name: "mid",
    configDir: mid,
    tempDir: join(root, "tmp"),
    pidFile: join(root, "none.pid"),
    sources: ["configured" as const],
    files: { conf: false, user: true, server: false },
    running: false,
    webif: { enabled: false, host: "", port: 0, ssl: false },
    problems: [],
  };
  const midSnap = (await buildSnapshot(midInstance, sampler)).snapshot;
  const crypto = createClient(CryptoService, host.transportFor(CryptoService));
  const syncOf = (snapshot: typeof midSnap) => ({ $typeName: "myosicam.agent.v1.SyncRequest" as const, present: [snapshot.ref!], snapshots: [snapshot] });
  const fresh = await timed(5, (run) => {
    const renamed = { ...midSnap, ref: { ...midSnap.ref!, name: `new-${run + 1}` } };
    return storeSync(db, crypto, serverId, syncOf(renamed));
  });
  await storeSync(db, crypto, serverId, syncOf(midSnap));
  const resync = await timed(9, (run) => {
    const accounts = midSnap.accounts.map((a, i) => (i === 7 ? { ...a, description: `changed ${run}` } : a));
    return storeSync(db, crypto, serverId, syncOf({ ...midSnap, accounts }));
  });
  console.log(
    `panel ingest of a 2,000-account snapshot: re-sync after one account changed ${resync.ms.toFixed(1)} ms (target ≤ 100 ms); as a new instance ${fresh.ms.toFixed(1)} ms`,
  );

  // 3. The agent's RSS while idle, after its first sync: the bundled artifact against this panel.
  const artifact = join(repo, "dist/agent/myosicam-agent-linux-x64");
  if (!existsSync(artifact)) {
    console.log("agent idle RSS: skipped (run `npm run build:agent` first)");
  } else {
    const { token } = await createInstallToken(db, { server: "bench-agent", createdBy: "bench" });
    const stateDir = join(root, "agent-state");
    await registerAgent({
      panelUrl: host.listeners[0]!.url,
      installToken: token,
      pin: host.tls.fingerprint,
      stateDir,
      log,
      oscamDirs: [join(repo, "test/fixtures/oscam/main")],
    });
    // The single executable; NODE_OPTIONS reaches its embedded runtime.
    const child = owned(
      spawn(artifact, ["run", "--state-dir", stateDir, "--unit-dir", join(root, "no-units")], {
        stdio: ["ignore", "ignore", "pipe"],
        env: { LOG_LEVEL: "info", ...(process.env.BENCH_AGENT_NODE_FLAGS ? { NODE_OPTIONS: process.env.BENCH_AGENT_NODE_FLAGS } : {}) },
      }),
    );
    let err = "";
    child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
    const deadline = Date.now() + 30_000;
    while (!err.includes("synced with the panel") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 3000)); // idle after the sync
    const status = await readFile(`/proc/${child.pid}/status`, "utf8").catch(() => "");
    const mb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0) / 1024;
    const [rss, anon, file] = [mb("VmRSS"), mb("RssAnon"), mb("RssFile")];
    child.kill("SIGTERM");
    console.log(
      `agent idle RSS after its first sync: ${rss.toFixed(0)} MB (target ≤ 60 MB): ${anon.toFixed(0)} MB its own (heap, code), ` +
        `${file.toFixed(0)} MB pages of the Node binary (clean, shared with every process running it)${err.includes("synced") ? "" : " — it never synced"}`,
    );
  }
  await db.destroy();
  await host.stop();
} finally {
  await postgres.stop();
  await rm(root, { recursive: true, force: true });
}
