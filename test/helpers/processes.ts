import { processStatFields } from "../../agent/discovery/processes.js";

/** The parent of process `pid` from /proc/<pid>/stat, or undefined when it is gone. */
export async function parentPid(pid: number): Promise<number | undefined> {
  return Number((await processStatFields("/proc", pid))?.[1]) || undefined;
}
