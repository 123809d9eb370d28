import { readFile, unlink, watch } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { AgentHealth } from "../gen/myosicam/agent/v1/agent_pb.js";
import { busyRetryDelayMs, retryDelayMs, withJitter } from "../services/lib/backoff.js";
import type { Logger } from "../services/lib/log.js";
import { agentClient, type PanelEndpoint } from "./panel.js";
import { PinMismatchError } from "../services/lib/pinned-certificate.js";
import { registerAgent } from "./register.js";
import { machineKey, openToken, readState, type AgentState } from "./state.js";
import { hostUptimeSeconds, loadAverage } from "./system.js";
import { discoverInstances, type DiscoveryOptions } from "./discovery/discover.js";
import { createExecutor, type ReportedHash, runCommandStream } from "./commands.js";
import { clockSkewSeconds, resyncDelayMs, retryBaseMs, retryCapMs, suspiciousSkewSeconds } from "./timing.js";
import { createSyncer } from "./sync.js";
import { createUnloadedChanges } from "./unloaded-changes.js";
import { confirmUpgrade, upgradeAgent } from "./upgrade.js";
import { agentVersion } from "./version.js";

/** Where a bootstrap re-run leaves a fresh install token for a running agent whose token was refused. */
export const pendingTokenFile = (stateDir: string) => join(stateDir, "install-token");

type Link = "starting" | "connected" | "busy" | "unreachable" | "token_refused" | "clock_skew" | "incompatible";

/** The agent can never succeed without the operator: stop instead of retrying. */
export class FatalAgentError extends Error {
  override name = "FatalAgentError";
}

/**
 * Heartbeats every interval ±10 % until `signal` aborts. The panel being down is survived with
 * full-jitter backoff; the log gets one line per change of state, not one per retry. When the
 * panel refuses the agent token, the agent re-registers only if a fresh install token waits in
 * the state directory (a re-run bootstrap puts it there).
 */
export async function runAgent(options: { stateDir: string; log: Logger; signal: AbortSignal; discovery?: DiscoveryOptions }): Promise<{ restart: boolean }> {
  const { stateDir, log } = options;
  // Stopped from outside (SIGTERM), or from inside when an upgrade was switched to.
  const stopping = new AbortController();
  const signal = AbortSignal.any([options.signal, stopping.signal]);
  let restart = false;
  let upgradeChecked = false;
  // A wrong MYOSICAM_AGENT_RESYNC_SPREAD_SECONDS is said at start, not after the first change.
  resyncDelayMs();
  let state = await loadRegisteredState(stateDir);
  let client = clientFor(state, await machineKey(stateDir), log);
  const discovery: DiscoveryOptions = { ...options.discovery, configDirs: [...(state.oscamDirs ?? []), ...(options.discovery?.configDirs ?? [])] };
  const unloaded = createUnloadedChanges();
  const syncer = createSyncer({ client: () => client, discovery, log, unloaded });
  let synced = false;
  let streaming: Promise<void> | undefined;
  let link: Link = "starting";
  let failures = 0;
  const started = Date.now();
  /** The command stream, opened once (and reopened by itself after failures). */
  const openCommandStream = () => {
    if (streaming) return;
    const execute = createExecutor({
      resync: () => syncer.syncNow(),
      syncSettled: () => syncer.settled(),
      ownChange: (instance, changed) => syncer.ownChange(instance, changed),
      discover: () => discoverInstances({ ...discovery, probeWebif: false }),
      unloaded,
      upgrade: (command) => upgradeAgent(command, { client: () => client, log }),
    });
    const onRestart = () => {
      restart = true;
      stopping.abort();
    };
    // After a change set's change: nothing more when the panel took the instance's new hash from the
    // result; otherwise a sync 2–60 s later (with the snapshot, if the panel did not take the hash).
    const changeReported = ({ instance, hash }: { instance: string; hash: ReportedHash }) => {
      if (hash === "taken") return;
      if (hash === "refused") syncer.forget(instance);
      syncer.later(resyncDelayMs());
    };
    streaming = runCommandStream({ client: () => client, execute, stateDir, log, signal, onRestart, changeReported });
  };
  const change = (next: Link, fields: Record<string, unknown>, message: string, level: "info" | "warn" | "error" = "info") => {
    if (next !== link) log[level]({ panel: state.panelUrl, serverId: state.serverId, ...fields }, message);
    link = next;
  };

  // The panel's heartbeat interval, as its last answer said.
  let intervalMs = 60_000;
  while (!signal.aborted) {
    let waitMs: number;
    try {
      const readings = await syncer.readings().catch((err: Error) => (log.warn({ err: err.message }, "could not take resource readings"), undefined));
      const res = await client.heartbeat(
        { uptimeSeconds: BigInt(Math.floor((Date.now() - started) / 1000)), health: AgentHealth.OK, agentVersion, load: loadAverage(), ...readings },
        { signal, timeoutMs: 30_000 },
      );
      change(
        "connected",
        { approved: res.approved, hostUptimeSeconds: hostUptimeSeconds() },
        res.approved ? "connected to the panel" : "connected to the panel; waiting for an operator to approve this agent",
      );
      failures = 0;
      if (!upgradeChecked) {
        // The first accepted heartbeat of a version on trial ends its trial.
        upgradeChecked = true;
        await confirmUpgrade(log).catch((err: Error) => log.error({ err: err.message }, "could not end the upgrade's trial"));
      }
      // Only an approved agent may sync: the first time on start, then on changes (and retries after a failure).
      if (res.approved && !synced) {
        synced = true;
        void syncer.syncNow();
      } else if (res.approved) syncer.retryIfFailed();
      // A pending agent gets no commands: the stream opens once it is approved.
      if (res.approved) openCommandStream();
      intervalMs = (res.heartbeatIntervalSeconds || 60) * 1000;
      waitMs = withJitter(intervalMs, 0.1);
    } catch (err) {
      if (signal.aborted) break;
      const e = ConnectError.from(err);
      if (e.cause instanceof PinMismatchError || /pinned fingerprint/.test(e.rawMessage)) {
        throw new FatalAgentError(`${e.rawMessage}; the agent stops: register again with the right --pin`);
      }
      if (e.code === Code.FailedPrecondition) {
        // This version and the panel's do not work together: only an upgrade (of one or the other)
        // helps. The command stream stays open to it, so that the panel's upgrade can reach it.
        change("incompatible", { reason: e.rawMessage }, `the panel refuses this agent: ${e.rawMessage}`, "error");
        openCommandStream();
        await sleep(retryCapMs, undefined, { signal }).catch(() => {});
        continue;
      }
      const skew = e.code === Code.Unauthenticated ? clockSkewSeconds(e.metadata) : undefined;
      const busyDelayMs = busyRetryDelayMs(e, intervalMs);
      if (skew !== undefined && Math.abs(skew) > suspiciousSkewSeconds) {
        // Not the token: this host's time. Retried as when unreachable, and the token kept.
        change(
          "clock_skew",
          { skewSeconds: skew, reason: e.rawMessage },
          `the panel refuses this agent's signed calls: this host's clock is ${Math.abs(skew)} s ${skew > 0 ? "ahead of" : "behind"} the panel's (calls are accepted within 300 s by default); set the time right (NTP); retrying with backoff`,
          "error",
        );
        waitMs = retryDelayMs(e, failures++, retryBaseMs, retryCapMs);
      } else if (e.code === Code.Unauthenticated) {
        const fresh = await readFile(pendingTokenFile(stateDir), "utf8").then(
          (t) => t.trim(),
          () => undefined,
        );
        if (fresh) {
          log.warn({ serverId: state.serverId }, "the panel refused the agent token; re-registering with the waiting install token");
          await unlink(pendingTokenFile(stateDir)).catch(() => {});
          try {
            state = await registerAgent({ panelUrl: state.panelUrl, installToken: fresh, pin: state.pin, stateDir, log });
            client = clientFor(state, await machineKey(stateDir), log);
            continue;
          } catch (regErr) {
            log.error({ err: (regErr as Error).message }, "re-registration failed");
          }
        }
        change(
          "token_refused",
          { reason: e.rawMessage },
          "the panel refused the agent token (revoked, or rotated by another bootstrap); re-run the bootstrap with a fresh install token",
          "error",
        );
        // Woken at once when a bootstrap leaves a fresh install token, else retried at the cap.
        await tokenArrival(stateDir, retryCapMs, signal);
        continue;
      } else if (/certificate is not yet valid|certificate has expired/.test(e.rawMessage)) {
        // The handshake judges the certificate by this host's clock.
        change(
          "clock_skew",
          { reason: e.rawMessage, hostTime: new Date().toISOString() },
          /not yet valid/.test(e.rawMessage)
            ? "the panel's certificate is not yet valid by this host's clock: the clock is probably behind; set the time right (NTP); retrying with backoff"
            : "the panel's certificate has expired by this host's clock: either it has (renew it on the panel) or this host's clock is ahead; retrying with backoff",
          "error",
        );
        waitMs = retryDelayMs(e, failures++, retryBaseMs, retryCapMs);
      } else if (busyDelayMs !== undefined) {
        // Reachable but busy (it said when to come back): the next heartbeat within an interval.
        change("busy", { reason: e.rawMessage }, "the panel is busy; the next heartbeat within one interval");
        waitMs = busyDelayMs;
      } else {
        change("unreachable", { reason: e.rawMessage }, "the panel is unreachable; retrying with backoff", "warn");
        waitMs = retryDelayMs(e, failures++, retryBaseMs, retryCapMs);
      }
    }
    await sleep(waitMs, undefined, { signal }).catch(() => {});
  }
  syncer.stop();
  await streaming;
  log.info(restart ? "agent stopped to restart into its upgrade" : "agent stopped");
  return { restart };
}

/** Resolves when `install-token` appears in the state directory, after `ms`, or on abort. */
async function tokenArrival(stateDir: string, ms: number, signal: AbortSignal): Promise<void> {
  const done = new AbortController();
  const stop = () => done.abort();
  signal.addEventListener("abort", stop, { once: true });
  const timer = setTimeout(stop, ms);
  try {
    for await (const event of watch(stateDir, { signal: done.signal })) {
      if (event.filename === "install-token") return;
    }
  } catch {
    // Aborted (deadline or shutdown), or the directory cannot be watched: retry either way.
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", stop);
  }
}

async function loadRegisteredState(stateDir: string): Promise<AgentState> {
  const state = await readState(stateDir);
  if (!state?.serverId || !state.sealedToken) {
    throw new FatalAgentError(`this host is not registered (no state in ${stateDir}); run \`myosicam-agent register --panel … --token …\` first`);
  }
  return state;
}

function clientFor(state: AgentState, key: Buffer, log: Logger) {
  const endpoint: PanelEndpoint = { url: state.panelUrl, certificate: state.certificate, pin: state.pin };
  return agentClient(endpoint, { serverId: state.serverId!, token: openToken(key, state.sealedToken!) }, log);
}
