import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";

/**
 * Child processes a benchmark started (a panel, HAProxy, load generators, agents), ended with it
 * however it ends: done, its deadline's `process.exit`, an error, Ctrl+C, or a `kill` of the
 * benchmark alone. Without this a killed benchmark left its panel running, listening and holding
 * its port and memory.
 */
const children = new Set<ChildProcess>();
/** Directories of their data, removed after them. */
const directories = new Set<string>();
let watching = false;

/** Registers a temporary directory to be removed when this process exits (if still there). */
export function ownedDirectory(path: string): string {
  directories.add(path);
  watch();
  return path;
}

/** Registers `child` to be sent SIGTERM when this process exits; answers it. */
export function owned<T extends ChildProcess>(child: T): T {
  children.add(child);
  child.once("exit", () => children.delete(child));
  watch();
  return child;
}

function watch(): void {
  if (!watching) {
    watching = true;
    process.once("exit", () => {
      for (const c of children) c.kill("SIGTERM");
      for (const d of directories) rmSync(d, { recursive: true, force: true });
    });
    // A signal's default action ends the process without its "exit" handlers: exit instead.
    for (const [signal, code] of [
      ["SIGINT", 130],
      ["SIGTERM", 143],
    ] as const) {
      process.once(signal, () => {
        console.error(`stopped by ${signal}; ending what the benchmark started`);
        process.exit(code);
      });
    }
  }
}
