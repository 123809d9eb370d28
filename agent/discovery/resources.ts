import { readdir, readFile, stat, statfs } from "node:fs/promises";
import { join } from "node:path";
import { freemem, loadavg, totalmem } from "node:os";
import { processStatFields } from "./processes.js";

/** Clock ticks per second of /proc times (USER_HZ; 100 on every Linux the agent targets). */
const ticksPerSecond = 100;

/** CPU time of a process in ticks (utime + stime, /proc/<pid>/stat fields 14 and 15). */
async function processTicks(procRoot: string, pid: number): Promise<number | undefined> {
  const fields = await processStatFields(procRoot, pid);
  if (!fields) return undefined;
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? ticks : undefined;
}

/** Busy and total ticks of the whole host (first line of /proc/stat). */
async function hostTicks(procRoot: string): Promise<{ busy: number; total: number } | undefined> {
  const text = await readFile(join(procRoot, "stat"), "utf8").catch(() => undefined);
  const cpu = text?.split("\n")[0]?.split(/\s+/).slice(1).map(Number);
  if (!cpu || cpu.length < 4 || cpu.some((n) => !Number.isFinite(n))) return undefined;
  const idle = cpu[3]! + (cpu[4] ?? 0);
  const total = cpu.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** RSS of a process in MB (VmRSS of /proc/<pid>/status). */
export async function processRssMb(procRoot: string, pid: number): Promise<number | undefined> {
  const text = await readFile(join(procRoot, String(pid), "status"), "utf8").catch(() => undefined);
  const kb = text && /^VmRSS:\s+(\d+)\s+kB/m.exec(text)?.[1];
  return kb ? Number(kb) / 1024 : undefined;
}

/** Bytes used by the files under `dir` (at most `maxEntries` looked at: a guard, not a quota). */
export async function directoryMb(dir: string, maxEntries = 20_000): Promise<number> {
  let bytes = 0;
  let seen = 0;
  const walk = async (path: string): Promise<void> => {
    const entries = await readdir(path, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (++seen > maxEntries) return;
      const full = join(path, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile()) bytes += (await stat(full).catch(() => undefined))?.size ?? 0;
    }
  };
  await walk(dir);
  return bytes / (1024 * 1024);
}

/**
 * CPU percentages need two samples: each call answers the share since the previous call for the
 * same process (undefined the first time). Cheap enough for every heartbeat: a few /proc reads.
 */
export function createResourceSampler(procRoot = "/proc", now: () => number = () => Date.now()) {
  const previous = new Map<number, { ticks: number; at: number }>();
  let previousHost: { busy: number; total: number } | undefined;
  return {
    async instance(pid: number | undefined, dirs: readonly string[]) {
      let cpuPercent: number | undefined;
      let rssMb: number | undefined;
      if (pid !== undefined) {
        const ticks = await processTicks(procRoot, pid);
        const at = now();
        const before = previous.get(pid);
        if (ticks !== undefined) {
          if (before && at > before.at) cpuPercent = Math.max(0, (((ticks - before.ticks) / ticksPerSecond) * 1000 * 100) / (at - before.at));
          previous.set(pid, { ticks, at });
        }
        rssMb = await processRssMb(procRoot, pid);
      }
      let diskMb = 0;
      for (const dir of new Set(dirs)) diskMb += await directoryMb(dir);
      return { cpuPercent: cpuPercent ?? 0, rssMb: rssMb ?? 0, diskMb };
    },
    async host(rootPath = "/") {
      const ticks = await hostTicks(procRoot);
      let cpuPercent = 0;
      if (ticks && previousHost && ticks.total > previousHost.total) {
        cpuPercent = (100 * (ticks.busy - previousHost.busy)) / (ticks.total - previousHost.total);
      }
      if (ticks) previousHost = ticks;
      const fs = await statfs(rootPath).catch(() => undefined);
      const [one = 0, five = 0, fifteen = 0] = loadavg();
      return {
        cpuPercent: Math.max(0, cpuPercent),
        memoryUsedMb: (totalmem() - freemem()) / (1024 * 1024),
        memoryTotalMb: totalmem() / (1024 * 1024),
        diskUsedMb: fs ? ((fs.blocks - fs.bfree) * fs.bsize) / (1024 * 1024) : 0,
        load: { one, five, fifteen },
      };
    },
  };
}
