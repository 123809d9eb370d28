import { readFileSync } from "node:fs";

/** File descriptors kept back from connections: database pools, log and data files, child processes. */
export const reservedDescriptors = 256;

/**
 * This process's open-file limit (RLIMIT_NOFILE) as /proc reports it; undefined where there is no
 * /proc. Node raises the soft limit to the hard one when it starts, so `soft` is what the process
 * may really use; only root (or systemd's `LimitNOFILE=`) can raise the hard one.
 */
export function openFileLimit(read: () => string = () => readFileSync("/proc/self/limits", "utf8")): { soft: number; hard: number } | undefined {
  let text: string;
  try {
    text = read();
  } catch {
    return undefined;
  }
  const match = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  if (!match) return undefined;
  const value = (s: string) => (s === "unlimited" ? Number.POSITIVE_INFINITY : Number(s));
  const soft = value(match[1]!);
  const hard = value(match[2]!);
  return Number.isNaN(soft) || Number.isNaN(hard) ? undefined : { soft, hard };
}

/** How many client connections a listener may hold under `limit` (each agent holds one). */
export function connectionCapacity(limit: { soft: number } | undefined): number | undefined {
  if (!limit || !Number.isFinite(limit.soft)) return undefined;
  return Math.max(16, limit.soft - reservedDescriptors);
}
