import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { isOscamProgram, parseOscamArgs, type OscamArgs } from "./cmdline.js";

/** A running OScam process found in /proc. */
export interface OscamProcess extends OscamArgs {
  pid: number;
  /** Seconds since the process started. */
  uptimeSeconds?: number;
}

/** Clock ticks per second in /proc/<pid>/stat times (USER_HZ: 100 on Linux). */
export const clockTicks = 100;

/** argv of a process from `/proc/<pid>/cmdline` (NUL-separated), or undefined when it is gone. */
export async function processArgv(procRoot: string, pid: number): Promise<string[] | undefined> {
  const raw = await readFile(join(procRoot, String(pid), "cmdline")).catch(() => undefined);
  if (!raw || raw.length === 0) return undefined;
  return raw.toString("utf8").replace(/\0$/, "").split("\0");
}

/**
 * The fields of `/proc/<pid>/stat` after the command name, or undefined when the process is gone:
 * [0] is field 3 (state), [1] field 4 (parent pid), [11] and [12] fields 14 and 15 (user and
 * system time), [19] field 22 (start time).
 */
export async function processStatFields(procRoot: string, pid: number): Promise<string[] | undefined> {
  const stat = await readFile(join(procRoot, String(pid), "stat"), "utf8").catch(() => undefined);
  // The command name (field 2) may contain spaces and parentheses: count fields after the last ')'.
  return stat ? stat.slice(stat.lastIndexOf(")") + 2).split(" ") : undefined;
}

/** Seconds since `pid` started, from /proc/<pid>/stat (field 22, clock ticks since boot) and /proc/uptime. */
export async function processUptime(procRoot: string, pid: number): Promise<number | undefined> {
  const fields = await processStatFields(procRoot, pid);
  const uptime = await readFile(join(procRoot, "uptime"), "utf8").catch(() => undefined);
  if (!fields || !uptime) return undefined;
  const startTicks = Number(fields[19]);
  const hostUptime = Number(uptime.split(" ")[0]);
  if (!Number.isFinite(startTicks) || !Number.isFinite(hostUptime)) return undefined;
  return Math.max(0, Math.round(hostUptime - startTicks / clockTicks));
}

/**
 * Every running OScam process: argv[0] names an OScam binary. With a restart supervisor (`-r 1`,
 * the default) both the supervisor and its worker match; callers dedupe by config dir and keep
 * the worker (the child), whose pid the pid file holds.
 */
export async function findOscamProcesses(procRoot = "/proc"): Promise<OscamProcess[]> {
  const entries = await readdir(procRoot).catch(() => [] as string[]);
  const found: OscamProcess[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const argv = await processArgv(procRoot, pid);
    if (!argv || !isOscamProgram(argv[0]!)) continue;
    found.push({ pid, ...parseOscamArgs(argv.slice(1)), uptimeSeconds: await processUptime(procRoot, pid) });
  }
  return found;
}
