/**
 * A real OpenSSH server for installer tests: `/usr/sbin/sshd -D` on a free loopback port with a
 * temporary host key, accepting passwords and the keys in a temporary authorized_keys file (for
 * every user, root included). Needs root and Debian's openssh-server (`.ci/run` installs it).
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { freePort } from "../../services/lib/embedded-postgres.js";

export interface Sshd {
  port: number;
  /** The host key's fingerprint as OpenSSH prints it (`SHA256:…`). */
  fingerprint: string;
  /** A private key that authorized_keys accepts. */
  clientKey: string;
  /** Everything sshd logged (-e). */
  log(): string;
  stop(): Promise<void>;
}

export async function startSshd(dir: string): Promise<Sshd> {
  await mkdir(dir, { recursive: true });
  await mkdir("/run/sshd", { recursive: true, mode: 0o755 });
  const hostKey = join(dir, "ssh_host_ed25519_key");
  const clientKey = join(dir, "client_ed25519");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", hostKey]);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", clientKey]);
  await writeFile(join(dir, "authorized_keys"), await readFile(`${clientKey}.pub`));
  const fingerprint = execFileSync("ssh-keygen", ["-l", "-f", `${hostKey}.pub`], { encoding: "utf8" }).split(" ")[1]!;
  const port = await freePort();
  const config = join(dir, "sshd_config");
  await writeFile(
    config,
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      "StrictModes no",
      "PasswordAuthentication yes",
      "KbdInteractiveAuthentication no",
      "PermitRootLogin yes",
      "UsePAM no",
      "MaxAuthTries 3",
      "LogLevel VERBOSE",
      "",
    ].join("\n"),
  );
  const child: ChildProcess = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", config], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (c: Buffer) => (log += c.toString()));
  await new Promise<void>((resolve, reject) => {
    // Without openssh-server the spawn fails: a rejected start, not an unhandled 'error' event.
    child.once("error", (err) => {
      clearInterval(timer);
      reject(new Error(`sshd cannot be started (${err.message}); install Debian's openssh-server`));
    });
    const timer = setInterval(() => {
      if (log.includes("Server listening")) {
        clearInterval(timer);
        resolve();
      } else if (child.exitCode !== null) {
        clearInterval(timer);
        reject(new Error(`sshd exited: ${log}`));
      }
    }, 50);
  });
  return {
    port,
    fingerprint,
    clientKey: await readFile(clientKey, "utf8"),
    log: () => log,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}
