/**
 * The install job (`install.agent`): connect over SSH with the saved credential (held in memory
 * for the job only), check or pin the host key, issue a fresh install token, upload the rendered
 * bootstrap as a 0600 file (the token is inside it: never in a process argument; the bootstrap
 * deletes itself), run it as root once, stream its steps and output into the job, and succeed
 * only when the new agent has registered and sent a heartbeat.
 */
import { readdir, readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { EnrollmentService } from "../../gen/myosicam/agent/v1/enrollment_pb.js";
import type { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import type { Knex } from "../lib/db.js";
import type { JobContext, JobDefinition } from "../lib/jobs/runner.js";
import { fingerprintOf, publicKeyPin } from "../lib/tls.js";
import { findSavedServer, openCredential, pinHostKey } from "./saved-servers.js";
import { connectSsh, InstallFailure, type SshConnection } from "./ssh.js";

export const installQueue = "install.agent";
export const uninstallQueue = "install.uninstall";
export type RootMethodName = "direct" | "sudo_password" | "sudo_nopasswd";

export interface InstallJobData {
  savedServerId: string;
  root: RootMethodName;
  oscamDirs: string[];
  requestedBy: string;
  waitSeconds: number;
}

export interface InstallDeps {
  db: Knex;
  crypto: Client<typeof CryptoService>;
  /** The agents service, for the install token, the first heartbeat and the revocation. */
  enrollment: Client<typeof EnrollmentService>;
  /** Where the new agent reaches the panel. */
  panelUrl(): string;
  /** The panel's certificate (PEM): its fingerprint and public key are pinned by the bootstrap. */
  certificate: string;
  /** Where the gated download finds the agent executables (AGENT_ARTIFACT_DIR). */
  artifactDir: string;
  /** The id of the release key agents must trust; undefined when the panel has none configured. */
  releaseKeyId?: () => Promise<string | undefined>;
}

/** Progress of each step, in percent: the job's own steps, then the bootstrap's `==> ` lines. */
const steps: Record<string, number> = {
  connect: 5,
  "host key": 10,
  "install token": 15,
  upload: 20,
  root: 25,
  "check system": 30,
  "download agent": 40,
  "create user": 55,
  "install agent": 60,
  "install unit": 65,
  sudoers: 70,
  register: 80,
  start: 90,
  registered: 95,
  uninstall: 50,
  revoke: 90,
};

const bootstrapFile = new URL("../../deploy/bootstrap.sh", import.meta.url);
const uninstallFile = new URL("../../deploy/uninstall.sh", import.meta.url);

/** The bootstrap with its values filled in. Every value is checked to hold no quote or newline. */
export async function renderBootstrap(values: {
  panelUrl: string;
  pubkeyPin: string;
  fingerprint: string;
  oscamDirs: string[];
  token: string;
  /** The release key id the agent must trust (the panel's AGENT_RELEASE_PUBLIC_KEY_FILE); unset skips the check. */
  releaseKeyId?: string;
}): Promise<string> {
  const safe = /^[A-Za-z0-9_./:+=@\- []*$/;
  const fill: Record<string, string> = {
    "@PANEL_URL@": values.panelUrl,
    "@PANEL_PUBKEY_PIN@": values.pubkeyPin,
    "@PANEL_FINGERPRINT@": values.fingerprint,
    "@OSCAM_DIRS@": values.oscamDirs.join(" "),
    "@INSTALL_TOKEN@": values.token,
    "@RELEASE_KEY_ID@": values.releaseKeyId ?? "",
  };
  let script = await readFile(bootstrapFile, "utf8");
  for (const [placeholder, value] of Object.entries(fill)) {
    if (!safe.test(value))
      throw new InstallFailure(
        "upload",
        `cannot put ${placeholder.slice(1, -1).toLowerCase()} into the bootstrap: ${JSON.stringify(value)} has characters a shell would read`,
      );
    script = script.replace(`'${placeholder}'`, `'${value}'`);
  }
  return script;
}

export function installJob(deps: InstallDeps): JobDefinition {
  return {
    queue: installQueue,
    // A failed install is reported, not retried: a wrong password must not become a retry storm.
    retryLimit: 0,
    expireInSeconds: 30 * 60,
    run: (ctx) => runInstall(deps, ctx),
  };
}

/** A job's step tracking: `enter` records the step and reports its progress. */
function stepper(ctx: JobContext) {
  const state = {
    step: "connect",
    async enter(name: string) {
      state.step = name;
      await ctx.progress(name, steps[name] ?? 0);
    },
  };
  return state;
}

/** Connects to the saved server with its credential; pins the host key on first use, else requires it. */
async function openSession(deps: InstallDeps, ctx: JobContext, savedServerId: string, at: ReturnType<typeof stepper>) {
  const saved = await findSavedServer(deps.db, savedServerId);
  const credential = await openCredential(deps.db, deps.crypto, saved.id);
  await ctx.output(`connecting to ${saved.username}@${saved.host}:${saved.port} with the saved ${saved.authKind === "password" ? "password" : "private key"}`);
  const connection = await connectSsh({
    host: saved.host,
    port: saved.port,
    username: saved.username,
    ...(saved.authKind === "password" ? { password: credential } : { privateKey: credential }),
    pinned: saved.hostKeyFingerprint,
  });
  try {
    await at.enter("host key");
    if (saved.hostKeyFingerprint === null) {
      const pinned = await pinHostKey(deps.db, saved.id, connection.fingerprint);
      if (pinned !== connection.fingerprint)
        throw new InstallFailure("host key", `another install pinned ${pinned} for this server meanwhile; this one was offered ${connection.fingerprint}`);
      await ctx.output(`host key ${connection.fingerprint} pinned on first use: compare it with the server's (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub)`);
    } else await ctx.output(`host key ${connection.fingerprint} matches the pinned one`);
  } catch (err) {
    connection.close();
    throw err;
  }
  return { saved, credential, connection };
}

/**
 * Uploads a script as a 0600 file in /tmp and runs it as root (`root` says how), streaming its
 * lines into the job: `==> <step>` lines move the progress. Fails with the step it was in and the
 * script's last error line.
 */
async function runScriptAsRoot(
  connection: SshConnection,
  ctx: JobContext,
  at: ReturnType<typeof stepper>,
  options: { script: string; root: RootMethodName; credential: string; hide: (line: string) => string; runStep: string },
): Promise<void> {
  await at.enter("upload");
  let path = "";
  let uploadErrors = "";
  const upload = await connection.run(`umask 077 && f=$(mktemp /tmp/myosicam-bootstrap.XXXXXX) && cat > "$f" && printf '%s\\n' "$f"`, {
    stdin: options.script,
    onLine: (line, stream) => (stream === "stdout" ? (path = line.trim()) : (uploadErrors += `${options.hide(line)}\n`)),
  });
  if (uploadErrors) await ctx.output(uploadErrors.trimEnd());
  if (upload.code !== 0 || !/^\/tmp\/myosicam-bootstrap\.[A-Za-z0-9]+$/.test(path))
    throw new InstallFailure("upload", `could not write the script to /tmp on the server (exit ${upload.code})`);
  await ctx.output(`script uploaded to ${path} (mode 0600; it is deleted when it ends)`);

  await at.enter(options.runStep);
  const command = options.root === "direct" ? `sh ${path}` : options.root === "sudo_password" ? `sudo -S -p '' sh ${path}` : `sudo -n sh ${path}`;
  await ctx.output(
    options.root === "direct"
      ? "running it as the saved user (root)"
      : `running it through ${options.root === "sudo_password" ? "sudo -S (the saved password on stdin)" : "sudo -n"}`,
  );
  let lastError = "";
  // One event after the other: written concurrently, they could be stored out of order.
  let written: Promise<void> = Promise.resolve();
  const run = await connection.run(command, {
    stdin: options.root === "sudo_password" ? `${options.credential}\n` : "",
    onLine: (raw, stream) => {
      const line = options.hide(raw);
      const marker = /^==> (.+)$/.exec(line);
      if (marker && marker[1]! in steps) written = written.then(() => at.enter(marker[1]!));
      else {
        if (stream === "stderr" && line.trim()) lastError = line.trim();
        written = written.then(() => ctx.output(line));
      }
    },
  });
  await written;
  await connection.run(`rm -f ${path}`).catch(() => undefined);
  if (run.code !== 0) {
    const reason =
      at.step === options.runStep && /sudo/.test(lastError)
        ? `sudo refused: ${lastError} (for sudo without a password choose sudo -n; with the saved password, the user must be allowed to sudo)`
        : lastError.replace(/^(bootstrap|uninstall) failed: /, "") || `the script exited with ${run.code ?? run.signal}`;
    throw new InstallFailure(at.step, reason);
  }
}

/** Runs a job's body; a failure is logged into the job and rethrown as `<step>: <reason>`. */
async function asJob(ctx: JobContext, at: ReturnType<typeof stepper>, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    const failure = err instanceof InstallFailure ? err : new InstallFailure(at.step, (err as Error).message);
    await ctx.output(`failed at step "${failure.step}": ${failure.message}`).catch(() => undefined);
    throw new Error(`${failure.step}: ${failure.message}`);
  }
}

/**
 * A job on a saved server: the connect step (after `preflight`), the session with the host key
 * checked, `body`, and the connection closed however it ends.
 */
async function overSsh(
  deps: InstallDeps,
  ctx: JobContext,
  savedServerId: string,
  body: (session: Awaited<ReturnType<typeof openSession>>, at: ReturnType<typeof stepper>) => Promise<void>,
  preflight?: () => Promise<void>,
): Promise<void> {
  const at = stepper(ctx);
  await asJob(ctx, at, async () => {
    await at.enter("connect");
    await preflight?.();
    const session = await openSession(deps, ctx, savedServerId, at);
    try {
      await body(session, at);
      await ctx.progress("done", 100);
    } finally {
      session.connection.close();
    }
  });
}

async function runInstall(deps: InstallDeps, ctx: JobContext): Promise<void> {
  const data = ctx.data as InstallJobData;
  const startedAt = new Date();
  const preflight = async () => {
    const built = await readdir(deps.artifactDir).then(
      (files) => files.filter((f) => f.startsWith("myosicam-agent-linux-")),
      () => [],
    );
    if (built.length === 0)
      throw new InstallFailure(
        "connect",
        `the agent is not built on this panel (nothing in ${deps.artifactDir}): run \`npm run build:agent\`, then start the install again`,
      );
  };
  await overSsh(
    deps,
    ctx,
    data.savedServerId,
    async ({ saved, credential, connection }, at) => {
      await at.enter("install token");
      const { token, hashPrefix } = await deps.enrollment.issueInstallToken({ serverName: saved.name, ttlSeconds: 30 * 60, createdBy: data.requestedBy });
      await ctx.output(`install token ${hashPrefix}… issued for server ${saved.name}, valid 30 minutes`);
      // Neither should ever be printed on the server; if one is, it stops here.
      const hide = (line: string) => {
        const masked = line.replaceAll(token, "[install token]");
        return credential.length >= 4 ? masked.replaceAll(credential, "[credential]") : masked;
      };
      const script = await renderBootstrap({
        panelUrl: deps.panelUrl(),
        pubkeyPin: publicKeyPin(deps.certificate),
        fingerprint: fingerprintOf(deps.certificate, "panel certificate"),
        oscamDirs: data.oscamDirs,
        token,
        releaseKeyId: await deps.releaseKeyId?.(),
      });
      await runScriptAsRoot(connection, ctx, at, { script, root: data.root, credential, hide, runStep: "root" });

      await at.enter("registered");
      await waitForAgent(deps.enrollment, saved.name, startedAt, data.waitSeconds, ctx.signal);
      await ctx.output(`the agent registered as server ${saved.name} and sent its first heartbeat`);
    },
    preflight,
  );
}

export interface UninstallJobData {
  savedServerId: string;
  root: RootMethodName;
  requestedBy: string;
}

/** The uninstall job (`install.uninstall`): deploy/uninstall.sh as root, then the agent is revoked. */
export function uninstallJob(deps: InstallDeps): JobDefinition {
  return {
    queue: uninstallQueue,
    retryLimit: 0,
    expireInSeconds: 10 * 60,
    run: async (ctx) => {
      const data = ctx.data as UninstallJobData;
      await overSsh(deps, ctx, data.savedServerId, async ({ saved, credential, connection }, at) => {
        const hide = (line: string) => (credential.length >= 4 ? line.replaceAll(credential, "[credential]") : line);
        await runScriptAsRoot(connection, ctx, at, { script: await readFile(uninstallFile, "utf8"), root: data.root, credential, hide, runStep: "uninstall" });
        await at.enter("revoke");
        const { revoked } = await deps.enrollment.revokeServerByName({ serverName: saved.name });
        await ctx.output(
          revoked ? `the agent of server ${saved.name} is revoked on the panel` : `no enrolled server ${saved.name} on the panel: nothing to revoke`,
        );
      });
    },
  };
}

/** Waits until the server's agent registered and heartbeated after `since`. */
async function waitForAgent(
  enrollment: Client<typeof EnrollmentService>,
  server: string,
  since: Date,
  waitSeconds: number,
  signal: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + waitSeconds * 1000;
  for (;;) {
    const row = await enrollment.getServerLiveness({ serverName: server }).catch((err: unknown) => {
      if (ConnectError.from(err).code === Code.NotFound) return undefined;
      throw err;
    });
    if (row?.lastSeenAt && timestampDate(row.lastSeenAt) >= since && row.status !== "revoked") return;
    if (Date.now() > deadline) {
      throw new InstallFailure(
        "registered",
        `the agent did not register and send a heartbeat within ${waitSeconds} s: on the server, journalctl -u myosicam-agent (or /var/log/myosicam-agent.log) says why`,
      );
    }
    await sleep(1000, undefined, { signal });
  }
}
