/**
 * CPU time of each party sharing the machine in a scale run — the panel, its PostgreSQL and the
 * emulator's workers — so that a phase can say which of them took the cores while it ran.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { clockTicks, processStatFields } from "../../agent/discovery/processes.js";

export interface CpuSample {
  /** Seconds of CPU used so far by the panel processes, by PostgreSQL (server and backends) and by the emulator's workers. */
  panel: number;
  postgres: number;
  emulator: number;
  /** performance.now() when taken. */
  at: number;
}

/** User + system seconds of `pid` (with its reaped children's when `withChildren`); 0 once it is gone. */
async function cpuSeconds(pid: number, withChildren = false): Promise<number> {
  const f = await processStatFields("/proc", pid);
  if (!f) return 0;
  const own = Number(f[11]) + Number(f[12]);
  return (withChildren ? own + Number(f[13]) + Number(f[14]) : own) / clockTicks;
}

/** PostgreSQL's CPU so far: the postmaster (with the backends it has reaped) and every live backend. */
async function postgresSeconds(clusterDir: string): Promise<number> {
  const postmaster = Number((await readFile(join(clusterDir, "postmaster.pid"), "utf8").catch(() => "")).split("\n")[0]);
  if (!Number.isInteger(postmaster) || postmaster <= 0) return 0;
  let total = await cpuSeconds(postmaster, true);
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const f = await processStatFields("/proc", Number(entry));
    if (f && Number(f[1]) === postmaster) total += (Number(f[11]) + Number(f[12])) / clockTicks;
  }
  return total;
}

export async function cpuSample(parties: { panelPids: readonly number[]; postgresDir: string; emulatorPids: readonly number[] }): Promise<CpuSample> {
  const sum = async (pids: readonly number[]) => (await Promise.all(pids.map((p) => cpuSeconds(p)))).reduce((a, b) => a + b, 0);
  const [panel, postgres, emulator] = await Promise.all([sum(parties.panelPids), postgresSeconds(parties.postgresDir), sum(parties.emulatorPids)]);
  return { panel, postgres, emulator, at: performance.now() };
}

/**
 * Each party's share between two samples, in words: "% of one core" each (the machine has
 * `cores` of them). A panel restarted in between is not comparable (its counter starts over).
 */
export function cpuShares(from: CpuSample, to: CpuSample, cores: number): string {
  const seconds = (to.at - from.at) / 1000;
  const pct = (a: number, b: number) => `${(((b - a) / seconds) * 100).toFixed(0)} %`;
  const idle = cores * 100 - ((to.panel - from.panel + to.postgres - from.postgres + to.emulator - from.emulator) / seconds) * 100;
  return `panel ${pct(from.panel, to.panel)}, PostgreSQL ${pct(from.postgres, to.postgres)}, emulator ${pct(from.emulator, to.emulator)} of one core (${cores * 100} % is every core; ≈${Math.max(0, idle).toFixed(0)} % left for everything else and idle)`;
}
