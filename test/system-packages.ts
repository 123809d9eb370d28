/**
 * The system tools the tests need (test/system-packages.txt, also read by `.ci/run`): which are
 * missing, and installing them with apt-get when this runs as root on a machine that has it.
 */
import { spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { delimiter, join } from "node:path";

export interface SystemTool {
  command: string;
  debianPackage: string;
}

/** The list in test/system-packages.txt. */
export function systemTools(file = join(import.meta.dirname, "system-packages.txt")): SystemTool[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() && !l.startsWith("#"))
    .map((l) => {
      const [command, debianPackage] = l.trim().split(/\s+/);
      return { command: command!, debianPackage: debianPackage! };
    });
}

/** Whether `command` is an executable on PATH or in the sbin directories (sshd lives in /usr/sbin). */
export function hasCommand(command: string, path = process.env.PATH ?? ""): boolean {
  const dirs = [...path.split(delimiter).filter(Boolean), "/usr/sbin", "/sbin", "/usr/local/sbin"];
  return dirs.some((dir) => {
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Whether a tool is there: an absolute path names a file its package installs (a library, a module). */
const present = (t: SystemTool) => (t.command.startsWith("/") ? existsSync(t.command) : hasCommand(t.command));

const missingPackages = (tools: readonly SystemTool[]) => [...new Set(tools.filter((t) => !present(t)).map((t) => t.debianPackage))];

/**
 * Installs what is missing when running as root with apt-get; answers undefined when everything is
 * there, or the one line that names what is missing and how to install it.
 */
export async function ensureSystemPackages(out: NodeJS.WritableStream, tools = systemTools(), options = { install: true }): Promise<string | undefined> {
  let missing = missingPackages(tools);
  if (missing.length === 0) return undefined;
  const isRoot = process.getuid?.() === 0;
  if (options.install && isRoot && hasCommand("apt-get")) {
    out.write(`installing the system packages the tests need: ${missing.join(" ")}\n`);
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    spawnSync("apt-get", ["update", "-qq"], { stdio: ["ignore", "ignore", "inherit"], env });
    spawnSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], { stdio: ["ignore", "ignore", "inherit"], env });
    missing = missingPackages(tools);
    if (missing.length === 0) return undefined;
  }
  return `the tests need these Debian packages, which are missing: ${missing.join(" ")}; install them with: sudo apt-get install ${missing.join(" ")}`;
}
