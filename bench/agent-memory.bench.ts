/**
 * The agent's memory as the kernel sees it: the single executable built with each set of Node/V8
 * flags, registered with a panel (crypto, jobs, agents and panel in this process, embedded
 * PostgreSQL) and left running idle (heartbeats every 2 s, its first sync done); then its RSS and
 * its private (unique) memory from /proc/<pid>/smaps_rollup. Also the executable's size and the
 * size it is served at (zstd). Targets (issue 19): private ≤ 30 MB and RSS ≤ 60 MB idle.
 * Each variant also shows where its RSS lies (the runtime's code and read-only data, anonymous
 * memory, the malloc heap), and the last row the floor: the runtime alone with HTTP/2 loaded.
 * Flags that only trade speed for memory (`--lite-mode`, `--jitless`, `--optimize-for-size`,
 * `--no-opt`) are measured, not shipped: they make parsing 10,000 accounts 1.6–3× slower (docs/sizing.md).
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
import { owned } from "./lib/owned-children.js";

const idleSeconds = Number(process.env.BENCH_IDLE_SECONDS ?? 20);
const variants = (process.env.BENCH_VARIANTS ?? "|--max-semi-space-size=1|--optimize-for-size|--lite-mode").split("|").map((v) => v.trim());
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

/** Resident memory by mapping (the executable, the heap, anonymous memory, libraries), KiB, largest first. */
async function residentByMapping(pid: number): Promise<Array<{ name: string; rssKiB: number; privateKiB: number }>> {
  const smaps = await readFile(`/proc/${pid}/smaps`, "utf8");
  const totals = new Map<string, { rssKiB: number; privateKiB: number }>();
  let name = "";
  for (const line of smaps.split("\n")) {
    const header = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header) {
      const path = (header[2] ?? "").trim();
      name = path === "" ? "anonymous" : path.startsWith("/") ? `${path.split("/").pop()} (${header[1]})` : path;
      continue;
    }
    const field = /^(Rss|Private_Clean|Private_Dirty):\s+(\d+) kB/.exec(line);
    if (!field) continue;
    const entry = totals.get(name) ?? { rssKiB: 0, privateKiB: 0 };
    if (field[1] === "Rss") entry.rssKiB += Number(field[2]);
    else entry.privateKiB += Number(field[2]);
    totals.set(name, entry);
  }
  return [...totals].map(([n, t]) => ({ name: n, ...t })).sort((a, b) => b.rssKiB - a.rssKiB);
}

/**
 * The floor under any agent built on this runtime: the same Node (the one the executable embeds),
 * idle, with only what every agent must load — HTTP/2 and TLS for the panel, and local time (Date
 * pages in ICU's time-zone code) — measured like the agent.
 */
async function runtimeFloor(): Promise<string> {
  const child = owned(spawn(process.execPath, ["-e", "require('node:http2'); new Date().getHours(); setInterval(() => {}, 60_000)"], { stdio: "ignore" }));
  try {
    await sleep(3000);
    const m = await memoryOf(child.pid!);
    return `| the runtime alone (\`node\` + \`node:http2\` + local time, no agent code) | ${mb(m.rssKiB)} | ${mb(m.privateKiB)} | ${mb(m.dirtyKiB)} | ${mb(m.pssKiB)} | |`;
  } finally {
    child.kill("SIGKILL");
  }
}

const panel = await startBenchPanel();
const work = await mkdtemp(join(tmpdir(), "myosicam-agent-memory-"));
const rows: string[] = [];
const breakdowns: string[] = [];
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
    const register = owned(
      spawn(executable, ["register", "--panel", panel.url, "--pin", panel.host.tls.fingerprint, "--token-stdin", "--state-dir", state], {
        env,
        stdio: ["pipe", "ignore", "pipe"],
      }),
    );
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
    const agent = owned(spawn(executable, ["run", "--state-dir", state], { env, stdio: ["ignore", "ignore", "pipe"] }));
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
      const where = (await residentByMapping(agent.pid!)).slice(0, 6);
      breakdowns.push(`${execArgv || "(none)"}: ${where.map((w) => `${w.name} ${mb(w.rssKiB)} (private ${mb(w.privateKiB)})`).join("; ")}`);
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
console.log(await runtimeFloor());
console.log("where the RSS is, largest first:");
for (const line of breakdowns) console.log(`  ${line}`);
process.exit(0);
