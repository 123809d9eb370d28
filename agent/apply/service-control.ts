import { execFile } from "node:child_process";
import { userInfo } from "node:os";

/** The verbs the agent may ask systemd for (the sudoers rule in deploy/ allows exactly these and `status`). */
export type ServiceVerb = "start" | "stop" | "restart";

/** Runs a program; injectable so tests put a stand-in `systemctl` on PATH. */
export type CommandRunner = (program: string, args: readonly string[]) => Promise<{ code: number; output: string }>;

export const runCommand: CommandRunner = (program, args) =>
  new Promise((resolve) => {
    execFile(program, [...args], { timeout: 90_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === "number" ? Number((err as { code: number }).code) : 127) : 0;
      resolve({ code, output: `${stdout}${stderr}`.trim().slice(0, 2000) });
    });
  });

const unitPattern = /^oscam(@[A-Za-z0-9_.-]{1,64})?\.service$/;

/**
 * `sudo -n systemctl <verb> <unit>` — through the narrow sudoers rule; as root, `systemctl`
 * directly. Restarts go through systemd because OScam started with `-r 0` exits with 99 on a
 * WebIF restart (OSCAM.md §5.3). Answers the exit code and output.
 */
export async function controlUnit(verb: ServiceVerb, unit: string, run: CommandRunner = runCommand): Promise<{ code: number; output: string }> {
  if (!unitPattern.test(unit)) return { code: 2, output: `unit ${unit} is not an OScam unit the sudoers rule allows (oscam.service or oscam@<name>.service)` };
  return userInfo().uid === 0 ? run("systemctl", [verb, unit]) : run("sudo", ["-n", "systemctl", verb, unit]);
}
