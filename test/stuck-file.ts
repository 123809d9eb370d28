/**
 * What `npm test` does with a test file that runs past its deadline: say what the file's process
 * was waiting on (its processes, and the handles Node's diagnostic report lists as active: timers,
 * sockets, child processes), then kill it and every process under it, so that a hung file fails
 * with its name and leaves no panel or PostgreSQL behind instead of hanging the run.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { processArgv } from "../agent/discovery/processes.js";
import { parentPid } from "./helpers/processes.js";

/** Node flags a test file runs with so that SIGUSR2 writes a diagnostic report into `directory`. */
export const reportFlags = (directory: string) => ["--report-on-signal", "--report-signal=SIGUSR2", `--report-directory=${directory}`, "--report-compact"];

/** The processes under `pid` (children, theirs, …), from /proc, each with its command line. */
export async function descendants(pid: number): Promise<{ pid: number; parent: number; command: string }[]> {
  const all: { pid: number; parent: number; command: string }[] = [];
  for (const entry of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const parent = await parentPid(Number(entry));
    if (!parent) continue;
    const command = ((await processArgv("/proc", Number(entry))) ?? []).join(" ");
    all.push({ pid: Number(entry), parent, command });
  }
  const found: typeof all = [];
  const under = new Set([pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) {
      if (under.has(p.parent) && !under.has(p.pid)) {
        under.add(p.pid);
        found.push(p);
        grew = true;
      }
    }
  }
  return found;
}

interface ReportHandle {
  type: string;
  is_active?: boolean;
  is_referenced?: boolean;
  firesInMsFromNow?: number;
  localEndpoint?: { host?: string; ip4?: string; port?: number } | null;
  remoteEndpoint?: { host?: string; ip4?: string; port?: number } | null;
  pid?: number;
  filename?: string;
}

const endpoint = (e: ReportHandle["localEndpoint"]) => (e ? `${e.host ?? e.ip4 ?? "?"}:${e.port ?? "?"}` : "-");

/** One line per handle keeping the process alive (active and referenced), like `tcp 127.0.0.1:5 → 127.0.0.1:443`. */
export function activeHandles(report: { libuv?: ReportHandle[] }): string[] {
  const lines: string[] = [];
  for (const h of report.libuv ?? []) {
    if (!h.is_active || h.is_referenced === false) continue;
    if (h.type === "tcp") lines.push(`tcp ${endpoint(h.localEndpoint)} → ${endpoint(h.remoteEndpoint)}`);
    else if (h.type === "timer") lines.push(`timer firing in ${h.firesInMsFromNow} ms`);
    else if (h.type === "process") lines.push(`child process ${h.pid}`);
    else if (h.type === "fs_event" || h.type === "fs_poll") lines.push(`${h.type} ${h.filename ?? ""}`.trim());
    else if (!["async", "signal", "loop"].includes(h.type)) lines.push(h.type);
  }
  return lines;
}

/**
 * Describes what the file's process `pid` was doing and kills it with everything under it;
 * answers the description. `reportDirectory` is where its diagnostic report lands (see reportFlags).
 */
export async function describeAndStop(pid: number, reportDirectory: string): Promise<string> {
  const lines: string[] = [];
  const processes = await descendants(pid);
  lines.push(
    processes.length === 0
      ? "no process under it"
      : `processes under it:\n${processes.map((p) => `  ${p.pid} (under ${p.parent}): ${p.command.slice(0, 160)}`).join("\n")}`,
  );
  const before = new Set(await readdir(reportDirectory).catch(() => [] as string[]));
  try {
    process.kill(pid, "SIGUSR2");
  } catch {
    // Gone already.
  }
  // The report is written from the process's own thread: a process stuck in a loop writes none.
  let report: string | undefined;
  for (let i = 0; i < 30 && report === undefined; i++) {
    await sleep(100);
    const added = (await readdir(reportDirectory).catch(() => [] as string[])).filter((f) => !before.has(f) && f.endsWith(".json"));
    if (added[0]) report = await readFile(join(reportDirectory, added[0]), "utf8").catch(() => undefined);
  }
  let handles: string[] | undefined;
  try {
    handles = report === undefined ? undefined : activeHandles(JSON.parse(report));
  } catch {
    handles = undefined; // Not whole yet: said below as no report.
  }
  lines.push(
    handles === undefined
      ? "it wrote no diagnostic report within 3 s (a loop that never yields, or a crash)"
      : handles.length === 0
        ? "it held no active timer, socket or child process: it awaited a promise nothing will settle"
        : `what it was waiting on:\n${handles.map((h) => `  ${h}`).join("\n")}`,
  );
  // Everything under it (again: a process may have started meanwhile), then the file's process.
  for (const p of [...processes, ...(await descendants(pid))]) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // Gone already.
    }
  }
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Gone already.
  }
  return lines.join("\n");
}
