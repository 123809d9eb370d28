import { readFile } from "node:fs/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { InstallJobState, InstallService, RootAccess, SshAuthKind, type SavedServer } from "../gen/myosicam/panel/v1/install_pb.js";
import { isoOf, printJson } from "./context.js";
import { panelApi } from "./panel-client.js";
import { readStdin } from "./stdin.js";

function serverJson(s: SavedServer) {
  return {
    id: s.id,
    name: s.name,
    host: s.host,
    port: s.port,
    username: s.username,
    authKind: s.authKind === SshAuthKind.PASSWORD ? "password" : "private_key",
    hostKeyFingerprint: s.hostKeyFingerprint || null,
    createdBy: s.createdBy,
    createdAt: isoOf(s.createdAt),
  };
}

/** `server add`: saves where and how the installer logs in; the credential comes from stdin or a key file. */
export async function serverAddCommand(options: {
  name: string;
  host: string;
  port: number;
  user: string;
  passwordStdin: boolean;
  keyFile?: string;
  json: boolean;
}): Promise<void> {
  if (options.passwordStdin === Boolean(options.keyFile))
    throw new ConnectError("give exactly one credential: --password-stdin or --key-file <path>", Code.InvalidArgument);
  const credential = options.keyFile
    ? await readFile(options.keyFile, "utf8").catch((err: Error) => {
        throw new ConnectError(`--key-file: ${err.message}`, Code.InvalidArgument);
      })
    : await readStdin();
  const { server } = await (await panelApi()).client(InstallService).addSavedServer({
    name: options.name,
    host: options.host,
    port: options.port,
    username: options.user,
    credential: options.keyFile ? { case: "privateKey", value: credential } : { case: "password", value: credential },
  });
  if (options.json) return printJson({ server: serverJson(server!) });
  process.stdout.write(
    `saved server ${server!.name}: ${server!.username}@${server!.host}:${server!.port} with a ${options.keyFile ? "private key" : "password"} (sealed); its host key is pinned on the first install\n`,
  );
}

export async function serverListCommand(options: { json: boolean }): Promise<void> {
  const { servers } = await (await panelApi()).client(InstallService).listSavedServers({});
  if (options.json) return printJson({ servers: servers.map(serverJson) });
  const lines = servers.map(
    (s) =>
      `${s.name.padEnd(20)} ${`${s.username}@${s.host}:${s.port}`.padEnd(36)} ${serverJson(s).authKind.padEnd(12)} ${s.hostKeyFingerprint || "host key not pinned yet"}`,
  );
  process.stdout.write(lines.length ? lines.join("\n") + "\n" : "no saved servers; add one with `npx myosicam server add`\n");
}

export async function serverRemoveCommand(name: string, options: { json: boolean }): Promise<void> {
  const { server } = await (await panelApi()).client(InstallService).removeSavedServer({ server: name });
  if (options.json) return printJson({ server: serverJson(server!) });
  process.stdout.write(`saved server ${server!.name} removed with its credential (an installed agent keeps running: \`npx myosicam agent revoke\` stops it)\n`);
}

/** `server forget-host-key`: after a reinstall of the server, the next install pins its new key. */
export async function serverForgetHostKeyCommand(name: string, options: { json: boolean }): Promise<void> {
  const res = await (await panelApi()).client(InstallService).forgetHostKey({ server: name });
  if (options.json) return printJson({ server: serverJson(res.server!) });
  process.stdout.write(
    `forgot the host key ${res.forgottenFingerprint || "(none was pinned)"} of ${res.server!.name}; the next install pins the key it is offered\n`,
  );
}

const roots: Record<string, RootAccess> = { direct: RootAccess.DIRECT, sudo: RootAccess.SUDO_PASSWORD, "sudo-nopasswd": RootAccess.SUDO_NOPASSWD };

function rootOf(option: string): RootAccess {
  const root = roots[option];
  if (root === undefined) throw new ConnectError(`--root: direct, sudo or sudo-nopasswd (got "${option}")`, Code.InvalidArgument);
  return root;
}

/**
 * `server install`: queues the install job for the panel to run; `--follow` prints its steps and
 * output until it ends (exit 1 unless it succeeded).
 */
export async function serverInstallCommand(
  name: string,
  options: { root: string; oscamDir: string[]; waitSeconds: number; follow: boolean; json: boolean },
): Promise<void> {
  const { jobId } = await (await panelApi())
    .client(InstallService)
    .startInstall({ server: name, root: rootOf(options.root), oscamDirs: options.oscamDir, waitSeconds: options.waitSeconds });
  if (!options.follow) {
    if (options.json) return printJson({ jobId });
    process.stdout.write(`install of ${name} queued as job ${jobId}; the panel runs it (follow with --follow)\n`);
    return;
  }
  await followJob(jobId, options.json, (ok) => (ok ? `installed: the agent on ${name} is registered and heartbeating` : "install"));
}

/** `server uninstall`: removes the agent from a saved server over SSH and revokes it on the panel. */
export async function serverUninstallCommand(name: string, options: { root: string; follow: boolean; json: boolean }): Promise<void> {
  const { jobId } = await (await panelApi()).client(InstallService).startUninstall({ server: name, root: rootOf(options.root) });
  if (!options.follow) {
    if (options.json) return printJson({ jobId });
    process.stdout.write(`uninstall of ${name} queued as job ${jobId}; the panel runs it (follow with --follow)\n`);
    return;
  }
  await followJob(jobId, options.json, (ok) => (ok ? `uninstalled: nothing of the agent is left on ${name}, and it is revoked` : "uninstall"));
}

const finalStates = new Set([InstallJobState.SUCCEEDED, InstallJobState.FAILED, InstallJobState.CANCELLED]);
const stateName = (s: InstallJobState) => InstallJobState[s]?.toLowerCase() ?? "unknown";

/** Prints a job's steps and output until it ends (the panel ends the stream); exit code 1 unless it succeeded. */
async function followJob(jobId: string, json: boolean, summary: (ok: boolean) => string): Promise<void> {
  let state = InstallJobState.UNSPECIFIED;
  let error = "";
  for await (const { update } of (await panelApi()).client(InstallService).watchInstallJob({ jobId }, { timeoutMs: 0 })) {
    if (update.case === "job") {
      state = update.value.state;
      error = update.value.error;
    } else if (!json && update.case === "step") process.stdout.write(`[${String(update.value.percent).padStart(3)}%] ${update.value.name}\n`);
    else if (!json && update.case === "outputLine") process.stdout.write(`  ${update.value}\n`);
  }
  if (!finalStates.has(state)) throw new ConnectError(`the job's stream ended while it was ${stateName(state)}; follow it again`, Code.Unavailable);
  if (json) printJson({ jobId, state: stateName(state), error: error || null });
  else process.stdout.write(state === InstallJobState.SUCCEEDED ? `${summary(true)}\n` : `${summary(false)} ${stateName(state)}: ${error}\n`);
  if (state !== InstallJobState.SUCCEEDED) process.exitCode = 1;
}
