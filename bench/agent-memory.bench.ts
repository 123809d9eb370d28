/**
 * The agent's memory as the kernel sees it: the single executable built with each set of Node/V8
 * flags, registered with a panel (crypto, jobs, agents and panel in this process, embedded
 * PostgreSQL) and left running idle (heartbeats every 2 s, its first sync done); then its RSS and
 * its private (unique) memory from /proc/<pid>/smaps_rollup. Also the executable's size and the
 * size it is served at (zstd). Targets (issue 19): private ≤ 30 MB and RSS ≤ 60 MB idle.
 * `--lite-mode` (and `--jitless`) turn WebAssembly off, which undici's fetch needs: measured, not shipped.
 *
 *   npm run bench -- agent-memory          (BENCH_IDLE_SECONDS=20, BENCH_VARIANTS="|--max-semi-space-size=1" …)
 *
 * Bounded: each variant's start has 60 s, the whole run 10 minutes; a hung agent is killed and
 * reported, never waited for.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { zstdCompressSync } from "node:zlib";
import { createInstallToken } from "../services/agents/install-tokens.js";
import { buildAgent } from "./lib/build-agent.js";
import { startBenchPanel } from "./lib/panel.js";

const idleSeconds = Number(process.env.BENCH_IDLE_SECONDS ?? 20);
const variants = (process.env.BENCH_VARIANTS ?? "|--max-semi-space-size=1|--lite-mode").split("|").map((v) => v.trim());
const runDeadline = Date.now() + 10 * 60_000;
const watchdog = setTimeout(() => {
  console.error("agent-memory: the run passed its 10-minute deadline; stopping");
  process.exit(2);
}, 10 * 60_000);
watchdog.unref();

const mb = (kib: number) => `${(kib / 1024).toFixed(1)} MB`;

/** VmRSS and the private (clean + dirty) memory of a process, KiB. */
async function memoryOf(pid: number): Promise<{ rssKiB: number; privateKiB: number; dirtyKiB: number; pssKiB: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const rollup = await readFile(`/proc/${pid}/smaps_rollup`, "utf8");
  const field = (text: string, name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? Number.NaN);
  return {
    rssKiB: field(status, "VmRSS"),
    privateKiB: field(rollup, "Private_Clean") + field(rollup, "Private_Dirty"),
    dirtyKiB: field(rollup, "Private_Dirty"),
    pssKiB: field(rollup, "Pss"),
  };
}

const panel = await startBenchPanel();
const work = await mkdtemp(join(tmpdir(), "myosicam-agent-memory-"));
const rows: string[] = [];
try {
  for (const [i, execArgv] of variants.entries()) {
    if (Date.now() > runDeadline - 90_000) {
      rows.push(`| \`${execArgv || "(none)"}\` | not run: the run's deadline is near | | | | |`);
      continue;
    }
    const out = join(work, `build-${i}`);
    buildAgent(out, { execArgv });
    const executable = join(out, "myosicam-agent-linux-x64");
    const bytes = await readFile(executable);
    const compressed = zstdCompressSync(bytes).length;
    const state = join(work, `state-${i}`);
    const { token } = await createInstallToken(panel.db, { server: `memory-${i}`, createdBy: "bench" });
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: work };
    const register = spawn(executable, ["register", "--panel", panel.url, "--pin", panel.host.tls.fingerprint, "--token-stdin", "--state-dir", state], {
      env,
      stdio: ["pipe", "ignore", "pipe"],
    });
    let registerErr = "";
    register.stderr.on("data", (d: Buffer) => (registerErr += d));
    register.stdin.end(`${token}\n`);
    const registered = await Promise.race([new Promise<number | null>((r) => register.once("exit", r)), sleep(60_000).then(() => "timeout" as const)]);
    if (registered !== 0) {
      register.kill("SIGKILL");
      rows.push(
        `| \`${execArgv || "(none)"}\` | registration failed: ${registered === "timeout" ? "no answer in 60 s" : registerErr.trim().slice(0, 120)} | | | | |`,
      );
      continue;
    }
    const agent = spawn(executable, ["run", "--state-dir", state], { env, stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    agent.stderr.on("data", (d: Buffer) => (log += d));
    try {
      const started = Date.now();
      while (!/"msg":"connected to the panel"/.test(log)) {
        if (agent.exitCode !== null || Date.now() - started > 60_000) throw new Error(`did not connect: ${log.slice(-300)}`);
        await sleep(200);
      }
      await sleep(idleSeconds * 1000);
      const m = await memoryOf(agent.pid!);
      rows.push(
        `| \`${execArgv || "(none)"}\` | ${mb(m.rssKiB)} | ${mb(m.privateKiB)} | ${mb(m.dirtyKiB)} | ${mb(m.pssKiB)} | ${(bytes.length / 2 ** 20).toFixed(0)} MiB, ${(compressed / 2 ** 20).toFixed(1)} MiB served |`,
      );
    } catch (err) {
      rows.push(`| \`${execArgv || "(none)"}\` | ${(err as Error).message.slice(0, 160)} | | | | |`);
    } finally {
      agent.kill("SIGTERM");
      await Promise.race([new Promise((r) => agent.once("exit", r)), sleep(10_000).then(() => agent.kill("SIGKILL"))]);
    }
    await rm(out, { recursive: true, force: true });
  }
} finally {
  await panel.stop();
  await rm(work, { recursive: true, force: true });
}
console.log(`agent memory after ${idleSeconds} s idle (registered, first sync done, heartbeats running); targets: private ≤ 30 MB, RSS ≤ 60 MB`);
console.log("| flags | RSS | private | of it dirty (heap, not file-backed) | PSS | executable |");
console.log("|---|---|---|---|---|---|");
for (const row of rows) console.log(row);
process.exit(0);
