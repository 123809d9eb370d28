import { readFile } from "node:fs/promises";
import { isOscamProgram } from "./cmdline.js";
import { findOscamProcesses, type OscamProcess, processArgv, processUptime } from "./processes.js";

/** Whether an instance runs now, with its pid and uptime. */
export interface InstanceRuntimeNow {
  running: boolean;
  pid?: number;
  uptimeSeconds?: number;
}

/**
 * An instance's runtime now, as discovery decides it but cheaper (every heartbeat asks): the pid
 * in its pid file when that process is OScam, else the newest OScam process using its config dir
 * (the worker of a supervisor), else not running. `processes` lists the OScam processes; pass one
 * memoised list when asking for several instances at once, so /proc is scanned once at most.
 */
export async function currentRuntime(
  instance: { pidFile: string; configDir: string },
  procRoot = "/proc",
  processes: () => Promise<OscamProcess[]> = () => findOscamProcesses(procRoot),
): Promise<InstanceRuntimeNow> {
  let pid: number | undefined;
  const recorded = Number((await readFile(instance.pidFile, "utf8").catch(() => "")).trim());
  if (Number.isInteger(recorded) && recorded > 0) {
    const argv = await processArgv(procRoot, recorded);
    if (argv && isOscamProgram(argv[0]!)) pid = recorded;
  }
  pid ??= (await processes())
    .filter((p) => p.configDir === instance.configDir)
    .map((p) => p.pid)
    .sort((a, b) => b - a)[0];
  if (pid === undefined) return { running: false };
  return { running: true, pid, uptimeSeconds: await processUptime(procRoot, pid) };
}
