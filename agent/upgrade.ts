import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, open, readdir, readFile, readlink, rename, rm, symlink, unlink } from "node:fs/promises";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createZstdDecompress } from "node:zlib";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { AgentService, Command } from "../gen/myosicam/agent/v1/agent_pb.js";
import { writeFileAtomic } from "../services/lib/atomic-file.js";
import { retryDelayMs } from "../services/lib/backoff.js";
import type { Logger } from "../services/lib/log.js";
import { verifyManifest, type ReleaseArtifact } from "../services/lib/releases/manifest.js";
import { agentVersion, releasePublicKey } from "./version.js";

/**
 * Self-upgrade without root. The agent's home (`MYOSICAM_AGENT_HOME`, set by the start wrapper the
 * bootstrap installs; owned by the agent's user) holds `versions/<version>/myosicam-agent`,
 * `current` (the version the wrapper starts) and `previous` (the one it falls back to). An upgrade
 * downloads the release over the signed channel, checks the manifest's signature with the key
 * compiled into this agent and the executable's size and SHA-256, writes it beside the others,
 * marks a trial, switches `current` atomically and exits; the service manager starts the wrapper
 * again, which runs the new version on trial. The new version ends the trial after its first
 * accepted heartbeat; if it does not within the trial time, or exits on start 3 times, the
 * wrapper switches back and leaves `rolled-back` for the previous version to report.
 */

/** What the upgrade executor answers: an outcome to report, or a restart into the new version. */
export type UpgradeOutcome = { restart: true; detail: string } | { restart?: false; succeeded: boolean; failureCode: string; detail: string };

export const trialFile = "trial";
export const trialStartsFile = "trial-starts";
export const rolledBackFile = "rolled-back";
export const executableName = "myosicam-agent";

/** The agent's home when it was started by the wrapper; undefined otherwise. */
export const agentHome = (env: NodeJS.ProcessEnv = process.env) => env.MYOSICAM_AGENT_HOME || undefined;

/** `key=value` lines, as the wrapper (a POSIX shell script) reads and writes them. */
export async function readRecord(file: string): Promise<Record<string, string> | undefined> {
  const text = await readFile(file, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  const record: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const at = line.indexOf("=");
    if (at > 0) record[line.slice(0, at)] = line.slice(at + 1);
  }
  return record;
}

const recordText = (record: Record<string, string>) =>
  Object.entries(record)
    .map(([k, v]) => `${k}=${v.replace(/[\r\n]/g, " ")}\n`)
    .join("");

const failed = (failureCode: string, detail: string): UpgradeOutcome => ({ succeeded: false, failureCode, detail });

/** Runs an `upgrade_agent` command. */
export async function upgradeAgent(
  command: Command,
  deps: {
    client: () => Client<typeof AgentService>;
    log: Logger;
    home?: string;
    publicKey?: string;
    version?: string;
    target?: string;
    /** How the download waits before resuming (tests pass one that does not). */
    sleep?: (ms: number) => Promise<void>;
  },
): Promise<UpgradeOutcome> {
  if (command.payload.case !== "upgradeAgent") return failed("validation_failed", "upgrade_agent without the version to run");
  const wanted = command.payload.value.version;
  const running = deps.version ?? agentVersion;
  const home = deps.home ?? agentHome();
  const publicKey = deps.publicKey ?? releasePublicKey;
  if (home) {
    // The wrapper rolled this very upgrade back: that is its result.
    const rolledBack = await readRecord(join(home, rolledBackFile));
    if (rolledBack?.command === command.id) {
      await unlink(join(home, rolledBackFile)).catch(() => {});
      return failed("upgrade_rolled_back", `agent ${rolledBack.to} was rolled back to ${rolledBack.from}: ${rolledBack.reason ?? "no reason recorded"}`);
    }
  }
  if (wanted === running) return { succeeded: true, failureCode: "", detail: `the agent runs ${running}` };
  if (!publicKey) {
    return failed("not_upgradable", `agent ${running} was built without a release key: it cannot install releases; reinstall it with a build that has one`);
  }
  if (!home) {
    return failed(
      "not_upgradable",
      "this agent was not started by its start wrapper (MYOSICAM_AGENT_HOME is not set): re-run its install once to get the upgradable layout",
    );
  }
  const currentLink = await readlink(join(home, "current")).catch(() => undefined);
  if (!currentLink) return failed("not_upgradable", `${join(home, "current")} is missing: re-run the install once to get the upgradable layout`);
  if (await readRecord(join(home, trialFile)))
    return failed("upgrade_in_progress", "another upgrade is still on trial; try again once it is confirmed or rolled back");

  const target = deps.target ?? `linux-${process.arch}`;
  const dir = join(home, "versions", wanted);
  let artifact: ReleaseArtifact;
  try {
    artifact = await download(deps.client(), { version: wanted, target, dir, publicKey, log: deps.log, sleep: deps.sleep });
  } catch (err) {
    const e = err instanceof UpgradeRefusal ? err : new UpgradeRefusal("download_failed", downloadFailure(err));
    deps.log.warn({ version: wanted, failureCode: e.code, reason: e.message }, "upgrade refused; nothing was switched");
    await rm(join(dir, `${executableName}.part`), { force: true });
    await rm(join(dir, `${executableName}.zst.part`), { force: true });
    return failed(e.code, e.message);
  }

  // Trial first, then the switch: a wrapper that starts after the switch always sees the trial.
  await writeFileAtomic(
    join(home, trialFile),
    recordText({ command: command.id, from: running, to: wanted, started: String(Math.floor(Date.now() / 1000)) }),
    0o600,
  );
  await rm(join(home, trialStartsFile), { force: true });
  await switchLink(home, "previous", currentLink);
  await switchLink(home, "current", join("versions", wanted));
  deps.log.info({ from: running, to: wanted, sha256: artifact.sha256 }, "upgrade installed and switched; restarting into it");
  return { restart: true, detail: `switched to ${wanted}; restarting` };
}

/** Points `name` in `home` at `to`: a new link renamed over the old one (atomic). */
async function switchLink(home: string, name: string, to: string): Promise<void> {
  const tmp = join(home, `.${name}.tmp`);
  await rm(tmp, { force: true });
  await symlink(to, tmp);
  await rename(tmp, join(home, name));
}

class UpgradeRefusal extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const downloadFailure = (err: unknown) => {
  const e = err instanceof ConnectError ? err : undefined;
  const reason = e ? e.rawMessage : (err as NodeJS.ErrnoException).code === "ENOSPC" ? "no space left on the device" : (err as Error).message;
  return `the release could not be downloaded: ${reason}`;
};

/** Attempts at one download; each resumes where the previous one was cut. */
const downloadAttempts = 8;
/** Each attempt's deadline: the panel's longest. A slower link resumes in the next attempt. */
const attemptTimeoutMs = 300_000;
const resumableCodes = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Aborted, Code.Unknown, Code.ResourceExhausted]);

/**
 * Downloads and checks a release into `dir`; answers its artifact. The compressed chunks go to a
 * file as they arrive: a download that is cut (a slow link past the call's deadline, a panel that
 * restarted, one busy with other downloads) resumes from the next chunk, after the panel's
 * `retry-after` or a backoff, as long as the panel still offers the same signed manifest. The
 * executable is then decompressed from that file while its size and SHA-256 are checked.
 * Throws UpgradeRefusal when the release is not what was signed.
 */
async function download(
  client: Client<typeof AgentService>,
  options: { version: string; target: string; dir: string; publicKey: string; log: Logger; sleep?: (ms: number) => Promise<void> },
): Promise<ReleaseArtifact> {
  await mkdir(options.dir, { recursive: true, mode: 0o755 });
  const compressed = join(options.dir, `${executableName}.zst.part`);
  const wait = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  let signed: { manifest: Uint8Array; signature: string; artifact: ReleaseArtifact; compressedSize: number } | undefined;
  let chunks = 0;
  let bytes = 0;
  const file = await open(compressed, "w", 0o600);
  try {
    attempts: for (let attempt = 1; ; attempt++) {
      // Its own unref'd timer, and no call timeout (timeoutMs 0 also turns off the transport's
      // 30 s default): connect leaves a call's deadline timer armed when a stream ends early or
      // in an error, and it would hold a stopping agent for up to five minutes.
      const deadline = AbortSignal.timeout(attemptTimeoutMs);
      try {
        const stream = client.downloadRelease({ version: options.version, target: options.target, fromChunk: chunks }, { timeoutMs: 0, signal: deadline });
        let first = true;
        for await (const res of stream) {
          if (first) {
            first = false;
            if (res.message.case !== "header") throw new UpgradeRefusal("release_truncated", "the panel sent no release header");
            const header = res.message.value;
            if (signed && (!Buffer.from(header.manifest).equals(Buffer.from(signed.manifest)) || header.signature !== signed.signature)) {
              // The release changed under the download (it cannot once uploaded, but a panel could be
              // another one behind the same address): start again from the first chunk.
              options.log.warn({ version: options.version }, "the release's manifest changed while downloading; starting the download again");
              signed = undefined;
              if (chunks > 0) {
                // Counted as an attempt: a manifest that keeps changing ends the download.
                await file.truncate(0);
                chunks = 0;
                bytes = 0;
                if (attempt >= downloadAttempts) throw new UpgradeRefusal("download_failed", "the release's manifest kept changing while it was downloaded");
                continue attempts;
              }
            }
            signed ??= { ...checkHeader(header, options), manifest: header.manifest, signature: header.signature };
            continue;
          }
          if (res.message.case !== "chunk") continue;
          const chunk = res.message.value;
          if (bytes + chunk.length > signed!.compressedSize)
            throw new UpgradeRefusal("release_truncated", `the panel sent more than the release's ${signed!.compressedSize} compressed bytes`);
          // At its offset: a restarted download writes from 0 again over what it truncated.
          await file.write(chunk, 0, chunk.length, bytes);
          bytes += chunk.length;
          chunks++;
        }
        if (first) throw new UpgradeRefusal("release_truncated", "the panel sent no release header");
        break;
      } catch (err) {
        // Only the panel's or the network's failures are worth another attempt; a local one (a
        // full disk) is reported at once.
        if (!(err instanceof ConnectError) || !(resumableCodes.has(err.code) || deadline.aborted) || attempt >= downloadAttempts) throw err;
        const waitMs = retryDelayMs(err, attempt, 2000, 60_000);
        options.log.info(
          { version: options.version, chunks, bytes, attempt, reason: err.rawMessage, retryInMs: waitMs },
          "the release download was interrupted; resuming it",
        );
        await wait(waitMs);
      }
    }
    await file.sync();
  } finally {
    await file.close();
  }
  const { artifact, compressedSize } = signed!;
  if (bytes !== compressedSize) throw new UpgradeRefusal("release_truncated", `the panel sent ${bytes} of the release's ${compressedSize} compressed bytes`);

  const part = join(options.dir, `${executableName}.part`);
  const hash = createHash("sha256");
  let size = 0;
  const expected = artifact.size;
  const check = new Transform({
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > expected) return done(new UpgradeRefusal("release_checksum_mismatch", `the release is larger than its signed size (${expected} bytes)`));
      hash.update(chunk);
      done(null, chunk);
    },
  });
  try {
    await pipeline(createReadStream(compressed), createZstdDecompress(), check, createWriteStream(part, { mode: 0o755 }));
  } catch (err) {
    if (err instanceof UpgradeRefusal) throw err;
    if ((err as { code?: string }).code?.startsWith("ERR_ZSTD") || /zstd|Zstd|unexpected end/i.test((err as Error).message)) {
      throw new UpgradeRefusal("release_truncated", `the release did not decompress: it is truncated or damaged (${(err as Error).message})`);
    }
    throw err;
  } finally {
    await rm(compressed, { force: true });
  }
  if (size !== expected) throw new UpgradeRefusal("release_truncated", `the release ended after ${size} of ${expected} bytes`);
  if (hash.digest("hex") !== artifact.sha256) throw new UpgradeRefusal("release_checksum_mismatch", "the release's SHA-256 is not the signed one: refused");
  const handle = await open(part, "r");
  await handle.sync();
  await handle.close();
  await rename(part, join(options.dir, executableName));
  return artifact;
}

/** The signed manifest of a release header, checked: answers the artifact for this target. */
function checkHeader(
  header: { manifest: Uint8Array; signature: string; encoding: string; compressedSize: bigint },
  options: { version: string; target: string; publicKey: string },
): { artifact: ReleaseArtifact; compressedSize: number } {
  let artifact: ReleaseArtifact | undefined;
  try {
    const manifest = verifyManifest(header.manifest, header.signature, options.publicKey);
    if (manifest.version !== options.version) throw new Error(`the signed manifest is for ${manifest.version}, not ${options.version}`);
    artifact = manifest.artifacts.find((a) => a.target === options.target);
    if (!artifact) throw new Error(`the signed manifest has no ${options.target} executable`);
  } catch (err) {
    throw new UpgradeRefusal("release_signature_invalid", `the release was refused: ${(err as Error).message}`);
  }
  if (header.encoding !== "zstd")
    throw new UpgradeRefusal("release_encoding_unknown", `the release is encoded as "${header.encoding}", which this agent cannot read`);
  return { artifact, compressedSize: Number(header.compressedSize) };
}

/**
 * After the first accepted heartbeat: ends this version's trial (the wrapper stops watching) and
 * removes versions other than the current and previous one. Answers the trial ended, if any.
 */
export async function confirmUpgrade(log: Logger, home = agentHome(), version = agentVersion): Promise<Record<string, string> | undefined> {
  if (!home) return undefined;
  const trial = await readRecord(join(home, trialFile));
  if (!trial || trial.to !== version) return undefined;
  await rm(join(home, trialFile), { force: true });
  await rm(join(home, trialStartsFile), { force: true });
  log.info({ from: trial.from, to: trial.to }, "upgrade confirmed: this version heartbeats");
  const keep = new Set(
    (await Promise.all(["current", "previous"].map((l) => readlink(join(home, l)).catch(() => "")))).map((l) => l.replace(/^versions\//, "")),
  );
  for (const entry of await readdir(join(home, "versions")).catch(() => [] as string[])) {
    if (!keep.has(entry)) await rm(join(home, "versions", entry), { recursive: true, force: true });
  }
  return trial;
}
