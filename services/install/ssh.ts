/**
 * The installer's SSH side (ssh2): one connection with the host key checked against the pinned
 * fingerprint, and commands run on it with their output read line by line. Failures are
 * InstallFailure with the step they happened in and words an operator can act on.
 */
import { createHash } from "node:crypto";
import ssh2, { type ClientChannel, type Client as SshClient } from "ssh2";

const { Client } = ssh2;

/** Why an install stopped: the step, and what to do about it. */
export class InstallFailure extends Error {
  override name = "InstallFailure";
  constructor(
    readonly step: string,
    message: string,
  ) {
    super(message);
  }
}

/** OpenSSH's form of a host key fingerprint: `SHA256:` and unpadded base64. */
export function hostKeyFingerprint(key: Buffer): string {
  return "SHA256:" + createHash("sha256").update(key).digest("base64").replace(/=+$/, "");
}

export interface SshTarget {
  host: string;
  port: number;
  username: string;
  password?: string;
  privateKey?: string;
  /** The pinned fingerprint; none on first use. */
  pinned: string | null;
  readyTimeoutMs?: number;
}

export interface SshConnection {
  /** The fingerprint the server offered (equal to the pinned one when one was pinned). */
  fingerprint: string;
  /** Runs a command; `stdin` is written and closed; each output line goes to `onLine`. */
  run(
    command: string,
    options?: { stdin?: string; onLine?: (line: string, stream: "stdout" | "stderr") => void },
  ): Promise<{ code: number | null; signal?: string }>;
  close(): void;
}

/** Connects and authenticates; refuses a host key other than the pinned one, naming both. */
export function connectSsh(target: SshTarget): Promise<SshConnection> {
  const where = `${target.username}@${target.host}:${target.port}`;
  return new Promise((resolve, reject) => {
    const client = new Client();
    let offered: string | undefined;
    let settled = false;
    const fail = (err: InstallFailure) => {
      if (settled) return;
      settled = true;
      client.end();
      reject(err);
    };
    client.on("ready", () => {
      settled = true;
      resolve(connectionOf(client, offered!, where));
    });
    client.on("error", (err: Error & { level?: string; code?: string }) => {
      if (offered && target.pinned && offered !== target.pinned) {
        return fail(
          new InstallFailure(
            "host key",
            `the host key of ${target.host}:${target.port} changed: pinned ${target.pinned}, offered ${offered}. ` +
              `Nothing was sent. If the server was reinstalled, check the new key on its console (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) ` +
              `and run \`npx myosicam server forget-host-key <name>\``,
          ),
        );
      }
      if (err.level === "client-authentication") {
        return fail(
          new InstallFailure(
            "connect",
            `authentication failed for ${where} with the saved ${target.password !== undefined ? "password" : "private key"}: correct the saved server (remove and add it) and start again`,
          ),
        );
      }
      if (err.level === "client-timeout")
        return fail(new InstallFailure("connect", `${where} did not complete the SSH handshake in time: check the address, port and firewall`));
      fail(new InstallFailure("connect", `cannot connect to ${target.host}:${target.port}: ${err.message}`));
    });
    client.on("close", () => fail(new InstallFailure("connect", `${where} closed the connection before it was ready`)));
    client.connect({
      host: target.host,
      port: target.port,
      username: target.username,
      password: target.password,
      privateKey: target.privateKey,
      tryKeyboard: false,
      readyTimeout: target.readyTimeoutMs ?? 20_000,
      keepaliveInterval: 15_000,
      keepaliveCountMax: 3,
      hostVerifier: (key: Buffer) => {
        offered = hostKeyFingerprint(key);
        return target.pinned === null || offered === target.pinned;
      },
    });
  });
}

function connectionOf(client: SshClient, fingerprint: string, where: string): SshConnection {
  let lost: Error | undefined;
  client.on("error", (err) => (lost = err));
  client.on("close", () => (lost ??= new Error(`the connection to ${where} was closed`)));
  return {
    fingerprint,
    run(command, options = {}) {
      return new Promise((resolve, reject) => {
        if (lost) return reject(lost);
        client.exec(command, (err, channel: ClientChannel) => {
          if (err) return reject(err);
          const splitter = (stream: "stdout" | "stderr") => {
            let rest = "";
            return {
              push(chunk: Buffer) {
                rest += chunk.toString("utf8");
                let newline: number;
                while ((newline = rest.indexOf("\n")) >= 0) {
                  options.onLine?.(rest.slice(0, newline).replace(/\r$/, ""), stream);
                  rest = rest.slice(newline + 1);
                }
              },
              end() {
                if (rest) options.onLine?.(rest, stream);
                rest = "";
              },
            };
          };
          const out = splitter("stdout");
          const errOut = splitter("stderr");
          channel.on("data", (c: Buffer) => out.push(c));
          channel.stderr.on("data", (c: Buffer) => errOut.push(c));
          let exit: { code: number | null; signal?: string } | undefined;
          channel.on("exit", (code: number | null, signal?: string) => (exit = { code, signal }));
          channel.on("close", () => {
            out.end();
            errOut.end();
            if (exit) resolve(exit);
            else reject(lost ?? new Error(`the connection to ${where} was lost while running a command`));
          });
          channel.end(options.stdin ?? "");
        });
      });
    },
    close: () => client.end(),
  };
}
