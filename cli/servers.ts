import { readFile } from "node:fs/promises";
import { userInfo } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import type { Knex } from "knex";
import { Code, ConnectError, createClient, createRouterTransport, type ConnectRouter } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { CryptoService } from "../gen/myosicam/crypto/v1/crypto_pb.js";
import { InstallerService, RootMethod } from "../gen/myosicam/install/v1/install_pb.js";
import { createCryptoService } from "../services/crypto/service.js";
import { keyringFromConfig } from "../services/crypto/index.js";
import { createInstallerService } from "../services/install/service.js";
import { addSavedServer, findSavedServer, forgetHostKey, listSavedServers, removeSavedServer, type SavedServer } from "../services/install/saved-servers.js";
import { enqueueJobOnce } from "../services/lib/jobs/runner.js";
import { findJobRun, listJobEvents } from "../services/lib/jobs/store.js";
import { createCommandContext, printJson, type CommandContext } from "./context.js";
import { withDatabase } from "./database.js";
import { readStdin } from "./stdin.js";

const actor = () => `cli:${userInfo().username}`;

async function onPanel<T>(fn: (db: Knex, context: CommandContext, url: string) => Promise<T>): Promise<T> {
  const context = await createCommandContext();
  return withDatabase(context, "panel", (db, url) => fn(db, context, url));
}

const serverJson = (s: SavedServer) => ({ ...s, createdAt: s.createdAt.toISOString() });

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
  await onPanel(async (db, context) => {
    const crypto = createClient(
      CryptoService,
      createRouterTransport((router) => router.service(CryptoService, createCryptoService({ keyring: keyringFromConfig(context.config), db }))),
    );
    const saved = await addSavedServer(db, crypto, {
      name: options.name,
      host: options.host,
      port: options.port,
      username: options.user,
      authKind: options.keyFile ? "private_key" : "password",
      credential,
      createdBy: actor(),
    });
    if (options.json) return printJson({ server: serverJson(saved) });
    process.stdout.write(
      `saved server ${saved.name}: ${saved.username}@${saved.host}:${saved.port} with a ${saved.authKind.replace("_", " ")} (sealed); its host key is pinned on the first install\n`,
    );
  });
}

export async function serverListCommand(options: { json: boolean }): Promise<void> {
  await onPanel(async (db) => {
    const servers = await listSavedServers(db);
    if (options.json) return printJson({ servers: servers.map(serverJson) });
    const lines = servers.map(
      (s) =>
        `${s.name.padEnd(20)} ${`${s.username}@${s.host}:${s.port}`.padEnd(36)} ${s.authKind.padEnd(12)} ${s.hostKeyFingerprint ?? "host key not pinned yet"}`,
    );
    process.stdout.write(lines.length ? lines.join("\n") + "\n" : "no saved servers; add one with `npx myosicam server add`\n");
  });
}

export async function serverRemoveCommand(name: string, options: { json: boolean }): Promise<void> {
  await onPanel(async (db) => {
    const removed = await removeSavedServer(db, name);
    if (options.json) return printJson({ server: serverJson(removed) });
    process.stdout.write(
      `saved server ${removed.name} removed with its credential (an installed agent keeps running: \`npx myosicam agent revoke\` stops it)\n`,
    );
  });
}

/** `server forget-host-key`: after a reinstall of the server, the next install pins its new key. */
export async function serverForgetHostKeyCommand(name: string, options: { json: boolean }): Promise<void> {
  await onPanel(async (db) => {
    const saved = await findSavedServer(db, name);
    await forgetHostKey(db, saved.id);
    if (options.json) return printJson({ server: serverJson({ ...saved, hostKeyFingerprint: null }) });
    process.stdout.write(
      `forgot the host key ${saved.hostKeyFingerprint ?? "(none was pinned)"} of ${saved.name}; the next install pins the key it is offered\n`,
    );
  });
}

const roots: Record<string, RootMethod> = { direct: RootMethod.DIRECT, sudo: RootMethod.SUDO_PASSWORD, "sudo-nopasswd": RootMethod.SUDO_NOPASSWD };

/**
 * The InstallerService handlers in memory, with the protovalidate checks the panel applies; its
 * jobs are queued for a running panel (this process runs no workers).
 */
function installerOn(db: Knex, url: string) {
  // A queue that no panel created yet is a precondition the operator can fix: say so in words.
  const enqueueJob = (queue: string, data: Record<string, unknown>) =>
    enqueueJobOnce({ url, db, queue, data }).catch((err: Error) => {
      throw new ConnectError(err.message, Code.FailedPrecondition);
    });
  const routes = (router: ConnectRouter) => router.service(InstallerService, createInstallerService({ db, enqueueJob }));
  return createClient(InstallerService, createRouterTransport(routes, { router: { interceptors: [createValidateInterceptor()] } }));
}

function rootOf(option: string): RootMethod {
  const root = roots[option];
  if (root === undefined) throw new ConnectError(`--root: direct, sudo or sudo-nopasswd (got "${option}")`, Code.InvalidArgument);
  return root;
}

/**
 * `server install`: queues the install job for a running panel to run; `--follow` prints its steps
 * and output until it ends (exit 1 unless it succeeded).
 */
export async function serverInstallCommand(
  name: string,
  options: { root: string; oscamDir: string[]; waitSeconds: number; follow: boolean; json: boolean },
): Promise<void> {
  const root = rootOf(options.root);
  await onPanel(async (db, _context, url) => {
    const { jobId } = await installerOn(db, url).startInstall({
      server: name,
      root,
      oscamDirs: options.oscamDir,
      requestedBy: actor(),
      waitSeconds: options.waitSeconds,
    });
    if (!options.follow) {
      if (options.json) return printJson({ jobId });
      process.stdout.write(`install of ${name} queued as job ${jobId}; a running panel runs it (follow with --follow, or JobService.Watch)\n`);
      return;
    }
    await followJob(db, jobId, options.json, (ok) => (ok ? `installed: the agent on ${name} is registered and heartbeating` : "install"));
  });
}

/** `server uninstall`: removes the agent from a saved server over SSH and revokes it on the panel. */
export async function serverUninstallCommand(name: string, options: { root: string; follow: boolean; json: boolean }): Promise<void> {
  const root = rootOf(options.root);
  await onPanel(async (db, _context, url) => {
    const { jobId } = await installerOn(db, url).startUninstall({ server: name, root, requestedBy: actor() });
    if (!options.follow) {
      if (options.json) return printJson({ jobId });
      process.stdout.write(`uninstall of ${name} queued as job ${jobId}; a running panel runs it (follow with --follow)\n`);
      return;
    }
    await followJob(db, jobId, options.json, (ok) => (ok ? `uninstalled: nothing of the agent is left on ${name}, and it is revoked` : "uninstall"));
  });
}

/** Prints a job's steps and output until it ends; exit code 1 unless it succeeded. */
async function followJob(db: Knex, jobId: string, json: boolean, summary: (ok: boolean) => string): Promise<void> {
  let sequence = 0;
  for (;;) {
    const run = await findJobRun(db, jobId);
    for (const e of await listJobEvents(db, jobId, sequence)) {
      sequence = e.sequence;
      if (!json) process.stdout.write(e.line !== null ? `  ${e.line}\n` : `[${String(e.percent ?? 0).padStart(3)}%] ${e.step}\n`);
    }
    if (run && (run.state === "succeeded" || run.state === "failed" || run.state === "cancelled")) {
      if (json) printJson({ jobId, state: run.state, error: run.error });
      else process.stdout.write(run.state === "succeeded" ? `${summary(true)}\n` : `${summary(false)} ${run.state}: ${run.error}\n`);
      if (run.state !== "succeeded") process.exitCode = 1;
      return;
    }
    await sleep(500);
  }
}
