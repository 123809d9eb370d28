/**
 * One worker process of the fleet emulator: a share of the simulated agents, each as the real
 * agent behaves on the wire. Each registers with its own install token, then on its own TLS +
 * HTTP/2 connection, signing every call: syncs a full snapshot, holds its Subscribe stream open
 * (reopened with full-jitter backoff, never sooner than a retry hint), heartbeats every interval
 * ± 10 % with resource readings, syncs again on a schedule (hashes only, as the agent does when
 * nothing changed), and answers commands: a command id seen before is acknowledged, not run again.
 *
 * Started by fleet.ts with `fork`; reports counts every second; stops on "stop", when its parent
 * goes away, or at its deadline (then says so and exits 2): it never outlives the run.
 */
import { randomUUID } from "node:crypto";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Client, ConnectError, createClient } from "@connectrpc/connect";
import {
  type AccountChangeResultSchema,
  AccountChangeStatus,
  AgentHealth,
  AgentService,
  CommandOutcome,
  type HeartbeatRequest,
} from "../../gen/myosicam/agent/v1/agent_pb.js";
import { RegistrationService } from "../../gen/myosicam/agent/v1/registration_pb.js";
import type { InstanceSnapshot } from "../../gen/myosicam/agent/v1/snapshot_pb.js";
import { sendResult, withSilenceLimit } from "../../agent/commands.js";
import { agentConnectionTiming } from "../../agent/panel.js";
import { commandStreamSilenceMs, resyncDelayMs, retryBaseMs, retryCapMs } from "../../agent/timing.js";
import { busyRetryDelayMs, retryDelayMs, withJitter } from "../../services/lib/backoff.js";
import { createSignedTransport, createUnsignedTransport } from "../../services/lib/hmac/signing-client.js";
import { GuardedHttp2SessionManager } from "../../services/lib/http2-session-manager.js";
import type { AgentBehaviour, AgentSeed, FromWorker, ToWorker, WorkerReport } from "./protocol.js";
import { instanceSnapshots, withAccountChanges } from "./snapshot.js";

/**
 * What stops the run: each agent has an AbortController of its own, all aborted at the stop. An
 * AbortSignal keeps its listeners in a list that Node walks on every add and remove, and with every
 * call and pause of 2,000 agents listening on one shared signal, that walk took 11 % of a worker's
 * CPU, a third of the time it was busy.
 */
const running = new Set<AbortController>();
let stopped = false;
function agentStop(): AbortController {
  const stop = new AbortController();
  if (stopped) stop.abort();
  else running.add(stop);
  return stop;
}
function stopAll(): void {
  stopped = true;
  for (const stop of running) stop.abort();
  running.clear();
}
const send = (message: FromWorker) => process.send?.(message);

const fresh = (): Omit<WorkerReport, "type" | "streamsOpen" | "loopDelayMaxMs"> => ({
  registered: 0,
  registerMs: [],
  synced: 0,
  heartbeatMs: [],
  ran: [],
  redelivered: [],
  reported: 0,
  resyncsOwed: 0,
  failures: {},
  refusedWithHint: 0,
  lastErrors: [],
});
let period = fresh();
let streamsOpen = 0;
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

/** This period's report; the loop-delay figure starts over with the next one. */
function report(): WorkerReport {
  const r: WorkerReport = { type: "report", ...period, streamsOpen, loopDelayMaxMs: loopDelay.max / 1e6 };
  period = fresh();
  loopDelay.reset();
  return r;
}

function failed(procedure: string, err: unknown): ConnectError {
  const e = ConnectError.from(err);
  const key = `${procedure}: ${e.code === undefined ? "unknown" : e.code}`;
  period.failures[key] = (period.failures[key] ?? 0) + 1;
  if (e.metadata.get("retry-after")) period.refusedWithHint++;
  const line = `${procedure}: ${e.message}`.slice(0, 300);
  if (!period.lastErrors.includes(line) && period.lastErrors.length < 5) period.lastErrors.push(line);
  return e;
}

const elapsedMs = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;

/** Waits `ms`, or less when the run stops; answers whether the run goes on. */
async function pause(ms: number, stop: AbortSignal): Promise<boolean> {
  await sleep(ms, undefined, { signal: stop }).catch(() => {});
  return !stop.aborted;
}

/** Register until it works (a refusal under load is retried as the agent retries). */
async function register(url: string, ca: string, seed: AgentSeed, stop: AbortSignal): Promise<{ serverId: string; agentToken: string } | undefined> {
  const session = new GuardedHttp2SessionManager(url, {}, { ca });
  const client = createClient(RegistrationService, createUnsignedTransport({ baseUrl: url, ca, sessionManager: session }));
  // One agent id for every attempt, as the real agent keeps its own: a retry after a lost answer
  // is then answered again instead of finding the token used.
  const agentId = randomUUID();
  try {
    for (let attempt = 0; !stop.aborted; attempt++) {
      const start = process.hrtime.bigint();
      try {
        const res = await client.register(
          {
            installToken: seed.installToken,
            agentId,
            hostname: seed.name,
            ip: "192.0.2.1",
            os: "linux",
            osVersion: "debian-12",
            arch: "x64",
            agentVersion: "0.1.0",
          },
          { signal: stop, timeoutMs: 60_000 },
        );
        period.registered++;
        period.registerMs.push(elapsedMs(start));
        return { serverId: res.serverId, agentToken: res.agentToken };
      } catch (err) {
        if (stop.aborted) return undefined;
        const e = failed("Register", err);
        if (!(await pause(retryDelayMs(e, attempt, retryBaseMs, retryCapMs), stop))) return undefined;
      }
    }
    return undefined;
  } finally {
    session.abort();
  }
}

/** One simulated agent, from registration until the run stops. */
async function runAgent(url: string, ca: string, seed: AgentSeed, index: number, behaviour: AgentBehaviour, stop: AbortSignal): Promise<void> {
  const identity = await register(url, ca, seed, stop);
  if (!identity) return;
  const client: Client<typeof AgentService> = createClient(
    AgentService,
    createSignedTransport({ baseUrl: url, credentials: { callerId: identity.serverId, secret: identity.agentToken }, ca, ...agentConnectionTiming() }),
  );
  const seedNumber = index * 7919 + seed.name.length;
  const startedAt = Date.now();

  // What the agent's instances hold now (the seed's snapshots, with the account changes it
  // applied), and the content hash of each as last stored by the panel.
  let current: InstanceSnapshot[] = [];
  const lastSent = new Map<string, string>();
  let syncOwed = false;
  const present = () => current.map((s) => ({ ...s.ref! }));
  /**
   * Syncs as the agent does: the hashes of every instance and the snapshots of those whose content
   * the panel has not stored (all of them the first time; after an account change the changed one);
   * the panel asks for any it lacks. A failed sync is owed and tried again after the next heartbeat.
   * Answers whether it was stored, and the refusal (with its retry hint) when not.
   */
  const syncOnce = async (): Promise<{ stored: true } | { stored: false; refusal?: ConnectError }> => {
    if (current.length === 0) current = instanceSnapshots(seedNumber, behaviour.instances, behaviour.accounts);
    const snapshots = current.filter((s) => lastSent.get(s.ref!.name) !== s.ref!.contentHash);
    try {
      const res = await client.sync({ present: present(), snapshots, host: hostReadings() }, { signal: stop, timeoutMs: 120_000 });
      for (const s of snapshots) lastSent.set(s.ref!.name, s.ref!.contentHash);
      if (res.resend.length > 0) {
        const resend = new Set(res.resend);
        const again = current.filter((s) => resend.has(s.ref!.name));
        await client.sync({ present: present(), snapshots: again, host: hostReadings() }, { signal: stop, timeoutMs: 120_000 });
        for (const s of again) lastSent.set(s.ref!.name, s.ref!.contentHash);
      }
      period.synced++;
      syncOwed = false;
      return { stored: true };
    } catch (err) {
      syncOwed = true;
      return { stored: false, refusal: stop.aborted ? undefined : failed("Sync", err) };
    }
  };
  // One sync at a time, as the agent runs them (a sync asked for meanwhile runs after it).
  let syncing: Promise<unknown> = Promise.resolve();
  const sync = () => {
    const turn = syncing.then(syncOnce);
    syncing = turn;
    return turn;
  };
  // As the agent does after a change it reported: one resync some time later (resyncDelayMs),
  // changes reported meanwhile folded into it.
  let resyncHeld = false;
  const syncLater = () => {
    if (resyncHeld) return;
    resyncHeld = true;
    void pause(resyncDelayMs(), stop).then((go) => {
      resyncHeld = false;
      if (go) void sync();
    });
  };
  // As the agent does: a refused sync is tried again no sooner than the panel's retry hint.
  for (let attempt = 0; ; attempt++) {
    const result = await sync();
    if (result.stored) break;
    if (!(await pause(retryDelayMs(result.refusal, attempt, retryBaseMs, retryCapMs), stop))) return;
  }

  // The version it reports; an upgrade_agent command changes it, as a restart into the new version would.
  let version = "0.1.0";
  const heartbeat = (): HeartbeatRequest =>
    ({
      uptimeSeconds: BigInt(Math.floor((Date.now() - startedAt) / 1000) + 86_400),
      health: AgentHealth.OK,
      agentVersion: version,
      load: { one: 0.2, five: 0.15, fifteen: 0.1 },
      host: hostReadings(),
      instances: current.map((snapshot, i) => ({
        name: snapshot.ref!.name,
        resources: { cpuPercent: 1 + Math.random() * 3, rssMb: 30 + i, diskMb: 12 },
        runtime: { running: true, pid: 1000 + i, uptimeSeconds: 3600n },
      })),
    }) as HeartbeatRequest;

  const heartbeats = (async () => {
    // The first heartbeat at a random point of the first interval, so a ramp does not beat in step.
    if (!(await pause(Math.random() * behaviour.heartbeatSeconds * 1000, stop))) return;
    let failures = 0;
    while (!stop.aborted) {
      const start = process.hrtime.bigint();
      let waitMs = withJitter(behaviour.heartbeatSeconds * 1000, 0.1);
      try {
        await client.heartbeat(heartbeat(), { signal: stop, timeoutMs: 30_000 });
        period.heartbeatMs.push(elapsedMs(start));
        failures = 0;
        // As the agent does: a sync that failed is tried again after the next heartbeat.
        if (syncOwed) await sync();
      } catch (err) {
        if (stop.aborted) return;
        // As the agent does: a busy panel is called again within an interval, an unreachable one
        // is retried with backoff.
        const e = failed("Heartbeat", err);
        waitMs = busyRetryDelayMs(e, behaviour.heartbeatSeconds * 1000) ?? Math.min(waitMs, retryDelayMs(e, failures++, retryBaseMs, retryCapMs));
      }
      if (!(await pause(waitMs, stop))) return;
    }
  })();

  const syncs = (async () => {
    while (await pause(withJitter(behaviour.syncSeconds * 1000, 0.1), stop)) await sync();
  })();

  const ranHere = new Set<string>();
  const stream = (async () => {
    let failures = 0;
    while (!stop.aborted) {
      let open = false;
      let lastError: ConnectError | undefined;
      // As the agent does: a stream that carries nothing for the silence limit is given up.
      const silent = new AbortController();
      try {
        const messages = client.subscribe({ agentVersion: version }, { signal: AbortSignal.any([stop, silent.signal]), timeoutMs: 0 });
        for await (const message of withSilenceLimit(messages, commandStreamSilenceMs, (reason) => silent.abort(reason))) {
          if (!open) {
            open = true;
            streamsOpen++;
            failures = 0;
          }
          if (message.message.case !== "command") continue;
          const command = message.message.value;
          if (ranHere.has(command.id)) period.redelivered.push(command.id);
          else {
            ranHere.add(command.id);
            period.ran.push(command.id);
          }
          if (command.payload.case === "upgradeAgent") {
            // A failing upgrade is reported as the real agent's rollback is; a good one is not
            // reported at all: the agent "restarts" and heartbeats in the new version, which the
            // panel takes as done.
            const wanted = command.payload.value.version;
            if (behaviour.failUpgradesOn?.includes(seed.name)) {
              await client
                .reportResult(
                  {
                    commandId: command.id,
                    outcome: CommandOutcome.FAILED,
                    failureCode: "upgrade_rolled_back",
                    detail: `agent ${wanted} was rolled back to ${version}: it exited on start 3 times (emulated)`,
                  },
                  { timeoutMs: 30_000 },
                )
                .catch((err: unknown) => failed("ReportResult", err));
            } else if (wanted !== version) {
              version = wanted;
              await client.heartbeat(heartbeat(), { timeoutMs: 30_000 }).catch((err: unknown) => failed("Heartbeat", err));
            }
            continue;
          }
          // As the agent does for a change set's changes: the result carries each account as it
          // now is and goes first, once a sync under way has ended; the resync follows it.
          // As the agent, it says what the change did to the instance's content hash when it was
          // applied to the snapshot last sent and shows every account it changed: the panel takes
          // the new hash, and no resync follows.
          let accountResults: MessageInitShape<typeof AccountChangeResultSchema>[] = [];
          let resync = false;
          let contentHash: { before: string; after: string } | undefined;
          if (command.payload.case === "applyAccounts") {
            const changes = command.payload.value.changes;
            const at = current.findIndex((s) => s.ref!.name === command.instance);
            const previous = at >= 0 ? current[at]! : undefined;
            const changed = previous && withAccountChanges(previous, changes);
            if (previous && changed) {
              current[at] = changed;
              resync = true;
              await syncing;
              const name = changed.ref!.name;
              const shown = changes.every((c) => changed.accounts.some((a) => a.user === c.user));
              if (shown && lastSent.get(name) === previous.ref!.contentHash) {
                contentHash = { before: previous.ref!.contentHash, after: changed.ref!.contentHash };
                lastSent.set(name, changed.ref!.contentHash);
              }
            }
            accountResults = changes.map((change, i) => ({
              index: i,
              status: AccountChangeStatus.APPLIED,
              detail: "emulated",
              before: { entries: [{ key: "user", value: change.user }] },
              after: { entries: [{ key: "user", value: change.user }, ...change.set] },
              account: changed?.accounts.find((a) => a.user === change.user),
            }));
          }
          // The agent's own sending: a result turned away for now is sent again on the open stream;
          // past its attempts (or refused for good) the stream is opened again (after backoff), the
          // panel delivers the command again and it is acknowledged without a second run. Every
          // failed attempt is counted here.
          const answer = await sendResult(
            () =>
              client
                .reportResult(
                  { commandId: command.id, outcome: CommandOutcome.SUCCEEDED, detail: "emulated", accountResults, contentHash },
                  { timeoutMs: 30_000 },
                )
                .catch((err: unknown) => {
                  throw Object.assign(failed("ReportResult", err), { counted: true });
                }),
            stop,
          );
          period.reported++;
          // As the agent does: nothing more when the panel took the new hash; otherwise a resync
          // later, with the snapshot if the panel did not take the hash.
          if (resync && !(contentHash && answer.contentHashTaken)) {
            if (contentHash) lastSent.delete(command.instance);
            period.resyncsOwed++;
            syncLater();
          }
        }
      } catch (err) {
        if (stop.aborted) break;
        lastError = (err as { counted?: boolean }).counted ? (err as ConnectError) : failed("Subscribe", silent.signal.aborted ? silent.signal.reason : err);
      } finally {
        if (open) streamsOpen--;
      }
      if (!(await pause(retryDelayMs(lastError, failures++, retryBaseMs, retryCapMs), stop))) break;
    }
  })();
  await Promise.all([heartbeats, syncs, stream]);
}

function hostReadings() {
  return { cpuPercent: 5 + Math.random() * 20, memoryUsedMb: 900 + Math.random() * 200, memoryTotalMb: 4096, diskUsedMb: 12_000 };
}

function start(message: Extract<ToWorker, { type: "start" }>) {
  const deadline = setTimeout(() => {
    send({ type: "fatal", message: `a fleet worker was still running after ${Math.round(message.deadlineMs / 1000)} s, its deadline; it stopped itself` });
    process.exit(2);
  }, message.deadlineMs);
  deadline.unref();
  const reports = setInterval(() => send(report()), 1000);
  const runs = message.agents.map(async (seed, i) => {
    const stop = agentStop();
    try {
      if (!(await pause((i / message.behaviour.rampPerSecond) * 1000, stop.signal))) return;
      await runAgent(message.url, message.ca, seed, i, message.behaviour, stop.signal).catch((err: unknown) => {
        failed("agent", err);
      });
    } finally {
      running.delete(stop);
    }
  });
  void Promise.all(runs).then(() => {
    clearInterval(reports);
    // The last counts, then out (exit only once the message has left).
    process.send?.(report() satisfies FromWorker, () => process.exit(0));
  });
}

process.on("message", (message: ToWorker) => {
  if (message.type === "start") start(message);
  else {
    stopAll();
    // Calls the abort did not end (a connection in the middle of its handshake) do not hold the exit.
    setTimeout(() => process.exit(0), 10_000).unref();
  }
});
// The emulator went away (it crashed, or was killed): so does the worker.
process.on("disconnect", () => {
  stopAll();
  setTimeout(() => process.exit(0), 5000).unref();
});
