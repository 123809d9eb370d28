import { randomBytes } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client, type HandlerContext, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import { AccountChangeStatus, AgentHealth, CommandOutcome, type AgentService, type Command } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { RegistrationService } from "../../gen/myosicam/agent/v1/registration_pb.js";
import type { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import type { Config } from "../lib/config.js";
import { peerAddressKey, requestIdKey } from "../lib/context-keys.js";
import type { Knex } from "../lib/db.js";
import { callerKey } from "../lib/hmac/server-auth.js";
import type { KnownCaller } from "../lib/hmac/verify.js";
import { currentStanding } from "../lib/licensing/check.js";
import { quotaRefusal, type Usage } from "../lib/licensing/standing.js";
import { createBatcher } from "../lib/batcher.js";
import type { Logger } from "../lib/log.js";
import type { DeliveryWindow } from "./delivery-window.js";
import type { SyncQueue } from "./sync-queue.js";
import type { HeartbeatWriter } from "./heartbeats.js";
import { hashToken } from "./install-tokens.js";
import type { CommandClaimer, createCommandHub, createResultWriter } from "./commands.js";
import { storeSync } from "./sync.js";
import { readReleaseChunks, selectRelease } from "./releases.js";
import { agentIncompatibility } from "../lib/releases/compatibility.js";
import { instanceSnapshotsStored } from "../lib/metrics.js";
import {
  type AgentRegistration,
  consumeInstallTokens,
  insertRegistrationAttempt,
  type InstallTokenRow,
  type ServerRow,
  recentFailures,
  recordThrottledAttempt,
  recordRegistrations,
  selectInstallToken,
  selectServer,
  selectServersTrust,
} from "./store.js";

type ResultWriter = ReturnType<typeof createResultWriter>;
type CommandHub = ReturnType<typeof createCommandHub>;

/** Every AgentService procedure; an approved agent may call them all, a pending one only Heartbeat. */
const allAgentProcedures = "/myosicam.agent.v1.AgentService/*";
const heartbeatProcedure = "/myosicam.agent.v1.AgentService/Heartbeat";
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The address a request came from, without the IPv4-mapped prefix. */
export const peerOf = (ctx: Pick<HandlerContext, "values">) => ctx.values.get(peerAddressKey).replace(/^::ffff:/, "") || "unknown";

/**
 * Agents as HMAC callers: the caller id is the server id, the secret its agent token. Each request
 * reads the server's row (status, approval, sealed token) by primary key, so a revocation or a
 * rotation on any replica counts on the very next request; the decrypted token is cached in memory
 * for as long as the sealed value is unchanged (a rotation seals a new value, which misses the cache).
 */
export function createAgentTrust(db: Knex, crypto: Client<typeof CryptoService>) {
  const opened = new Map<string, { envelope: string; secret: string }>();
  // Every signed call reads its server's row (a revoke counts from the next call); concurrent
  // calls read theirs in one query.
  const rows = createBatcher({ write: (ids: string[]) => selectServersTrust(db, ids), windowMs: 0, maxItems: 500 });
  return {
    async findCaller(id: string): Promise<KnownCaller | undefined> {
      if (!uuidPattern.test(id)) return undefined;
      const row = await rows.write(id);
      if (!row) return undefined;
      if (!row.agent_token || row.status === "revoked") {
        opened.delete(id);
        return row.status === "revoked" ? { id, active: false, secrets: [], allowedProcedures: [] } : undefined;
      }
      let cached = opened.get(id);
      if (cached?.envelope !== row.agent_token) {
        const res = await crypto.decrypt({ envelope: row.agent_token, context: { table: "servers", column: "agent_token", rowId: id } });
        cached = { envelope: row.agent_token, secret: Buffer.from(res.plaintext).toString("utf8") };
        opened.set(id, cached);
      }
      return { id, active: true, secrets: [cached.secret], allowedProcedures: row.approved ? [allAgentProcedures] : [heartbeatProcedure] };
    },
  };
}

/** Whether an authenticated agent may do more than heartbeat. */
export const isApproved = (caller: KnownCaller) => caller.allowedProcedures.includes(allAgentProcedures);

/** How long after a registration its answer may be asked for again (a retry after a lost answer). */
export const answerAgainSeconds = 10 * 60;

/** The advisory lock (by name) that registrations adding a server hold while they count the quota. */
export const serverQuotaLock = "myosicam:server-quota";

/**
 * Registrations that add a server count the quota one at a time (the advisory lock, across
 * replicas). Within one process they are gathered and counted in batches: one transaction takes
 * the lock, reads the license and the usage once, and records every registration waiting. One
 * transaction each made them wait for the lock on a pool connection apiece (ten at once took the
 * whole pool, and heartbeats of enrolled agents waited behind them), and their turns, several
 * round trips each, were as slow as the panel's busiest moment.
 */
const registrationsPerBatch = 100;

/**
 * Registrations under way at once in one process; past that, one is refused at once with a retry
 * hint (the agent retries no sooner), so that an enrolment burst is refused alone and not as part
 * of the panel's backlog, heartbeats of enrolled agents with it (admission control leaves
 * registrations to this bound: ServiceModule.ownQueues).
 */
export const maxRegistrationsUnderWay = 200;
const registrationRetryAfterSeconds = 5;

/** What became of a registration whose token was tried. */
type Recorded = { kind: "taken" } | { kind: "registered"; serverId: string; row: ServerRow };
type RegistrationOutcome = Recorded | { kind: "quota"; error: ConnectError };

/** A registration ready to be recorded: its token's hash and what the server row gets. */
interface PendingRegistration {
  hash: string;
  agent: AgentRegistration;
  /** The caller's; one that gave up before its batch is not registered. */
  signal: AbortSignal;
}

/**
 * Consumes the install tokens and records the agents on their servers, in the caller's
 * transaction, in a few statements whatever the number (one round trip each was what made a batch
 * of 100 take seconds under load). Answers each registration's outcome, in order: a token that is
 * no longer usable, or that an earlier registration of the same batch used, is "taken".
 */
async function consumeAndRecord(trx: Knex, registrations: PendingRegistration[]): Promise<Recorded[]> {
  const consumed = await consumeInstallTokens(
    trx,
    registrations.map((r) => r.hash),
  );
  const outcomes: Recorded[] = [];
  const recording: Array<{ serverId: string; agent: AgentRegistration; index: number }> = [];
  registrations.forEach((registration, index) => {
    const serverId = consumed.get(registration.hash);
    consumed.delete(registration.hash); // a second registration with the same token finds it used
    if (serverId) recording.push({ serverId, agent: registration.agent, index });
    else outcomes[index] = { kind: "taken" };
  });
  const rows = recording.length > 0 ? await recordRegistrations(trx, recording) : new Map<string, ServerRow>();
  for (const { serverId, index } of recording) outcomes[index] = { kind: "registered", serverId, row: rows.get(serverId)! };
  return outcomes;
}

type RefusalReason = "unknown_token" | "expired" | "consumed" | "revoked" | "quota" | "rate_limited" | "incompatible";

export interface RegistrationDeps {
  db: Knex;
  config: Pick<Config, "licenseKey" | "requireAgentApproval" | "agentHeartbeatIntervalSeconds" | "registrationFailuresPerMinute">;
  crypto: Client<typeof CryptoService>;
  currentUsage(db?: Knex): Promise<Usage>;
  log: Logger;
}

const tokenRefused = () =>
  new ConnectError(
    "install token rejected: it is unknown, expired or already used; ask the operator for a new one (npx myosicam token create --server <name>)",
    Code.Unauthenticated,
  );

/** `RegistrationService.Register` (DESIGN.md §3.2–§3.3). */
export function createRegistrationService(deps: RegistrationDeps): ServiceImpl<typeof RegistrationService> {
  const { db, log } = deps;
  const gaveUp = () => new ConnectError("the caller gave up before its registration was recorded", Code.Canceled);
  const addingServers = createBatcher<PendingRegistration, RegistrationOutcome>({
    windowMs: 0,
    maxItems: registrationsPerBatch,
    write: (batch) =>
      db.transaction(async (trx) => {
        // Registrations that add a server take their turn: the quota is counted and the servers
        // added in one step, so concurrent registrations cannot pass the quota together.
        await trx.raw("select pg_advisory_xact_lock(hashtext(?))", [serverQuotaLock]);
        const standing = await currentStanding(trx, deps.config.licenseKey);
        const usage = await deps.currentUsage(trx);
        const outcomes: Array<RegistrationOutcome | Error> = [];
        let waiting: number[] = [];
        batch.forEach((registration, index) => {
          if (registration.signal.aborted) outcomes[index] = gaveUp();
          else waiting.push(index);
        });
        // In the order they came, as many as the quota has room for; a token found unusable
        // leaves its room to the next ones.
        while (waiting.length > 0) {
          const room = waiting.findIndex((_, n) => quotaRefusal(standing, { ...usage, servers: usage.servers + n }, { servers: 1 }) !== undefined);
          const taking = room === -1 ? waiting : waiting.slice(0, room);
          if (taking.length === 0) {
            for (const index of waiting) outcomes[index] = { kind: "quota", error: quotaRefusal(standing, usage, { servers: 1 })! };
            break;
          }
          const recorded = await consumeAndRecord(
            trx,
            taking.map((index) => batch[index]!),
          );
          recorded.forEach((outcome, n) => {
            outcomes[taking[n]!] = outcome;
            if (outcome.kind === "registered") usage.servers++;
          });
          waiting = waiting.slice(taking.length);
        }
        return outcomes;
      }),
  });

  /**
   * A registration whose answer was lost (a timeout, a cut connection, a replica killed after the
   * commit) is answered again, so the agent's retry does not find its token used and stay locked
   * out: the same token and the same agent id, within `answerAgainSeconds` of the first answer,
   * while that answer's agent token is still the server's and has not heartbeated yet. Anything
   * else about a used token is refused as before.
   */
  const answerAgain = async (token: InstallTokenRow, agentId: string) => {
    const server = await selectServer(db, token.server_id);
    if (!server?.agent_token || server.status === "revoked" || server.agent_id !== agentId) return undefined;
    const answeredAt = token.consumed_at?.getTime();
    if (answeredAt === undefined || server.registered_at?.getTime() !== answeredAt) return undefined; // rotated since
    if (Date.now() - answeredAt > answerAgainSeconds * 1000) return undefined;
    if (server.last_seen_at && server.last_seen_at.getTime() > answeredAt) return undefined; // the agent got it
    const res = await deps.crypto.decrypt({ envelope: server.agent_token, context: { table: "servers", column: "agent_token", rowId: server.id } });
    return {
      serverId: server.id,
      agentToken: Buffer.from(res.plaintext).toString("utf8"),
      heartbeatIntervalSeconds: deps.config.agentHeartbeatIntervalSeconds,
      serverTime: timestampFromDate(new Date()),
      pendingApproval: server.status === "pending",
    };
  };

  const registration: ServiceImpl<typeof RegistrationService> = {
    async register(req, ctx) {
      const ip = peerOf(ctx);
      const requestId = ctx.values.get(requestIdKey);
      const hash = hashToken(req.installToken);
      const refuse = async (reason: RefusalReason, err: ConnectError, serverId?: string): Promise<never> => {
        await insertRegistrationAttempt(db, { ip, hashPrefix: hash.slice(0, 8), outcome: "refused", reason, serverId, requestId });
        log.warn({ ip, reason, tokenHashPrefix: hash.slice(0, 8), requestId }, "registration refused");
        throw err;
      };
      if ((await recentFailures(db, "registration_attempts", ip)) >= deps.config.registrationFailuresPerMinute) {
        await recordThrottledAttempt(db, "registration_attempts", { ip, hashPrefix: hash.slice(0, 8), outcome: "refused", reason: "rate_limited" });
        log.warn({ ip, requestId }, "registration refused: too many failures from this address");
        throw new ConnectError(`too many failed registrations from ${ip}; wait a minute before trying again`, Code.ResourceExhausted);
      }
      const token = await selectInstallToken(db, hash);
      if (!token) return refuse("unknown_token", tokenRefused());
      // Before the token is used: after upgrading the download, the same bootstrap can run again.
      const incompatible = agentIncompatibility(req.agentVersion);
      if (incompatible) return refuse("incompatible", new ConnectError(incompatible, Code.FailedPrecondition), token.server_id);
      if (token.state === "consumed") {
        const again = await answerAgain(token, req.agentId);
        if (again) {
          await insertRegistrationAttempt(db, {
            ip,
            hashPrefix: hash.slice(0, 8),
            outcome: "accepted",
            reason: "answered_again",
            serverId: again.serverId,
            requestId,
          });
          log.info({ serverId: again.serverId, ip, requestId }, "registration answered again: the agent did not get the first answer");
          return again;
        }
      }
      if (token.state !== "issued") return refuse(token.state, tokenRefused(), token.server_id);

      const server = (await selectServer(db, token.server_id))!;
      const addsServer = server.status === "new" || server.status === "revoked";
      const agentToken = randomBytes(32).toString("hex");
      const sealed = await deps.crypto.encrypt({
        plaintext: Buffer.from(agentToken, "utf8"),
        context: { table: "servers", column: "agent_token", rowId: token.server_id },
      });
      const pending: PendingRegistration = {
        hash,
        signal: ctx.signal,
        agent: {
          agentId: req.agentId,
          hostname: req.hostname,
          reportedIp: req.ip,
          seenIp: ip,
          os: req.os,
          osVersion: req.osVersion,
          arch: req.arch,
          agentVersion: req.agentVersion,
          agentToken: sealed.envelope,
          approvalRequired: deps.config.requireAgentApproval,
        },
      };
      const outcome: RegistrationOutcome = addsServer
        ? await addingServers.write(pending)
        : (await db.transaction((trx) => consumeAndRecord(trx, [pending])))[0]!;
      // The token stays valid after a quota refusal: after an upgrade the same bootstrap can be run again.
      if (outcome.kind === "quota") return refuse("quota", outcome.error, server.id);
      if (outcome.kind === "taken") {
        // Another registration consumed it first, or it expired a moment ago.
        const now = await selectInstallToken(db, hash);
        return refuse(now?.state === "expired" ? "expired" : "consumed", tokenRefused(), token.server_id);
      }
      const { serverId, row } = outcome;
      await insertRegistrationAttempt(db, {
        ip,
        hashPrefix: hash.slice(0, 8),
        outcome: "accepted",
        reason: addsServer ? "registered" : "token_rotated",
        serverId,
        requestId,
      });
      log.info(
        { serverId, server: row.name, hostname: req.hostname, ip, status: row.status, requestId },
        addsServer ? "agent registered" : "agent re-registered: its previous token is refused from now on",
      );
      return {
        serverId,
        agentToken,
        heartbeatIntervalSeconds: deps.config.agentHeartbeatIntervalSeconds,
        serverTime: timestampFromDate(new Date()),
        pendingApproval: row.status === "pending",
      };
    },
  };

  let underWay = 0;
  return {
    async register(req, ctx) {
      if (underWay >= maxRegistrationsUnderWay) {
        // Not a failed attempt: it is not audited, nor counted by the per-address rate limit.
        throw new ConnectError(
          `${underWay} registrations are under way; try again in ${registrationRetryAfterSeconds} s`,
          Code.Unavailable,
          new Headers({ "retry-after": String(registrationRetryAfterSeconds) }),
        );
      }
      underWay++;
      try {
        return await registration.register(req, ctx);
      } finally {
        underWay--;
      }
    },
  };
}

/**
 * Registrations that fail validation (a malformed token or field) count as failed attempts too:
 * audited with reason `malformed` and counted by the per-address rate limit.
 */
export function auditMalformedRegistrations(db: Knex, log: Logger): Interceptor {
  return (next) => async (req) => {
    if (req.service.typeName !== RegistrationService.typeName) return next(req);
    try {
      return await next(req);
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.InvalidArgument) {
        const ip = peerOf({ values: req.contextValues });
        const requestId = req.contextValues.get(requestIdKey);
        await insertRegistrationAttempt(db, { ip, outcome: "refused", reason: "malformed", requestId });
        log.warn({ ip, reason: "malformed", requestId }, "registration refused");
      }
      throw err;
    }
  };
}

const healthNames: Record<AgentHealth, string> = {
  [AgentHealth.UNSPECIFIED]: "unknown",
  [AgentHealth.OK]: "ok",
  [AgentHealth.DEGRADED]: "degraded",
};

/** Release downloads served at once by one panel process (each streams a few tens of MB from the database). */
export const maxConcurrentDownloads = 8;
const downloadRetryAfterSeconds = 15;

/** Keepalive interval of the command stream: proxies close streams idle for 60 s or more. */
export const keepaliveMs = 25_000;

const accountChangeStatuses: Partial<Record<AccountChangeStatus, "applied" | "unchanged" | "failed">> = {
  [AccountChangeStatus.APPLIED]: "applied",
  [AccountChangeStatus.UNCHANGED]: "unchanged",
  [AccountChangeStatus.FAILED]: "failed",
};

/** `AgentService`: Heartbeat, Sync, the command stream (Subscribe) and ReportResult. */
export function createAgentService(deps: {
  writer: HeartbeatWriter;
  intervalSeconds: number;
  db: Knex;
  crypto: Client<typeof CryptoService>;
  hub: CommandHub;
  claimer: CommandClaimer;
  results: ResultWriter;
  /** Flow control of delivery (delivery-window.ts): how many commands may wait for their results. */
  deliveries: DeliveryWindow;
  /** The syncs of this process (sync-queue.ts): its gate refuses a full queue before the signature is checked. */
  syncs: SyncQueue;
  keepaliveMs?: number;
}): Partial<ServiceImpl<typeof AgentService>> {
  let downloading = 0;
  return {
    async *downloadRelease(req, ctx) {
      const caller = ctx.values.get(callerKey);
      if (!caller) throw new ConnectError("downloads must be signed", Code.Unauthenticated);
      const release = await selectRelease(deps.db, req.version, req.target);
      if (!release) throw new ConnectError(`agent ${req.version} for ${req.target} is not uploaded to this panel`, Code.NotFound);
      // A rollout batch downloads together: a few at a time, the others told when to come back.
      if (downloading >= maxConcurrentDownloads) {
        throw new ConnectError(
          `${downloading} agents are downloading a release; try again in ${downloadRetryAfterSeconds} s`,
          Code.Unavailable,
          new Headers({ "retry-after": String(downloadRetryAfterSeconds) }),
        );
      }
      downloading++;
      try {
        yield {
          message: {
            case: "header",
            value: {
              manifest: Buffer.from(release.manifest, "utf8"),
              signature: release.signature,
              encoding: release.encoding,
              compressedSize: BigInt(release.compressedSize),
            },
          },
        };
        for (let seq = req.fromChunk; ; ) {
          const chunks = await readReleaseChunks(deps.db, req.version, req.target, seq, 8);
          for (const chunk of chunks) yield { message: { case: "chunk", value: chunk } };
          if (chunks.length < 8) break;
          seq += chunks.length;
        }
      } finally {
        downloading--;
      }
    },

    async *subscribe(_req, ctx) {
      const caller = ctx.values.get(callerKey);
      if (!caller) throw new ConnectError("subscribe must be signed", Code.Unauthenticated);
      const sent = new Set<string>();
      let wake: (() => void) | undefined;
      let woken = false;
      const unsubscribe = deps.hub.subscribe(caller.id, () => {
        woken = true;
        wake?.();
      });
      const onAbort = () => wake?.();
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      const keepalive = () => ({ message: { case: "keepalive" as const, value: { serverTime: timestampFromDate(new Date()) } } });
      /**
       * Waits for `ready` (a delivery turn) or, without one, for a notification; either way no longer
       * than the keepalive interval, and not at all once the call is aborted.
       */
      const pause = (ready?: Promise<void>) =>
        new Promise<"ready" | "woken" | "timeout">((resolve) => {
          let settled = false;
          const settle = (how: "ready" | "woken" | "timeout") => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            wake = undefined;
            resolve(how);
          };
          const timer = setTimeout(() => settle("timeout"), deps.keepaliveMs ?? keepaliveMs);
          // While waiting for a turn a notification changes nothing: the claim comes anyway.
          wake = () => (!ready || ctx.signal.aborted ? settle("woken") : undefined);
          ready?.then(() => settle("ready"));
          if (ctx.signal.aborted) settle("woken");
        });
      try {
        // A first keepalive at once: the agent knows its stream is open, proxies see traffic.
        yield keepalive();
        for (;;) {
          woken = false;
          const turn = deps.deliveries.turn(caller.id);
          let commands: Command[];
          try {
            if (!turn.granted) {
              while ((await pause(turn.ready)) === "timeout") yield keepalive();
              ctx.signal.throwIfAborted();
            }
            commands = await deps.claimer.claim(caller.id, sent);
            turn.delivered(commands.map((c) => c.id));
          } finally {
            turn.cancel();
          }
          for (const command of commands) {
            sent.add(command.id);
            yield { message: { case: "command", value: command } };
          }
          // Claims again only when woken (an announcement, or the hub's sweep): a keepalive is
          // no reason to ask the database.
          while (!woken && (await pause()) === "timeout") {
            ctx.signal.throwIfAborted();
            yield keepalive();
          }
          ctx.signal.throwIfAborted();
        }
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        unsubscribe();
        // Commands of this stream still unanswered come again on its next one.
        deps.deliveries.abandoned(sent);
      }
    },
    async reportResult(req, ctx) {
      const caller = ctx.values.get(callerKey);
      if (!caller) throw new ConnectError("results must be signed", Code.Unauthenticated);
      deps.deliveries.answered(caller.id, req.commandId);
      const stored = await deps.results.write({
        serverId: caller.id,
        commandId: req.commandId,
        succeeded: req.outcome === CommandOutcome.SUCCEEDED,
        failureCode: req.failureCode,
        detail: req.detail,
        restartRequiredKeys: req.restartRequiredKeys,
        accountResults: req.accountResults.map((a) => ({
          index: a.index,
          status: accountChangeStatuses[a.status] ?? "failed",
          failureCode: a.failureCode,
          detail: a.detail,
          before: a.before && Object.fromEntries(a.before.entries.map((kv) => [kv.key, kv.value])),
          after: a.after && Object.fromEntries(a.after.entries.map((kv) => [kv.key, kv.value])),
          followedBy: a.followedBy,
          account: a.account,
        })),
        contentHash: req.contentHash && { before: req.contentHash.before, after: req.contentHash.after },
      });
      return { contentHashTaken: stored.contentHashTaken };
    },
    async sync(req, ctx) {
      const caller = ctx.values.get(callerKey);
      if (!caller) throw new ConnectError("sync must be signed", Code.Unauthenticated);
      // Its gate refused it if the queue was full when it came in; it may have filled since (or the call came in memory).
      const refusal = deps.syncs.refusal();
      if (refusal) throw refusal;
      // A caller that gave up while waiting for its turn is not stored for nothing.
      const answer = await deps.syncs.run(() => {
        ctx.signal.throwIfAborted();
        return storeSync(deps.db, deps.crypto, caller.id, req);
      });
      instanceSnapshotsStored.inc(req.snapshots.length);
      return answer;
    },
    async heartbeat(req, ctx) {
      const caller = ctx.values.get(callerKey);
      if (!caller) throw new ConnectError("heartbeat must be signed", Code.Unauthenticated);
      const incompatible = agentIncompatibility(req.agentVersion);
      if (incompatible) throw new ConnectError(incompatible, Code.FailedPrecondition);
      const load = req.load ? [req.load.one, req.load.five, req.load.fifteen] : [];
      await deps.writer.record({
        serverId: caller.id,
        at: new Date(),
        uptimeSeconds: Number(req.uptimeSeconds),
        health: healthNames[req.health],
        agentVersion: req.agentVersion,
        load,
        host: req.host && {
          cpuPercent: req.host.cpuPercent,
          memoryUsedMb: req.host.memoryUsedMb,
          memoryTotalMb: req.host.memoryTotalMb,
          diskUsedMb: req.host.diskUsedMb,
        },
        instances: req.instances.map((i) => ({
          name: i.name,
          cpuPercent: i.resources!.cpuPercent,
          rssMb: i.resources!.rssMb,
          diskMb: i.resources!.diskMb,
          runtime: i.runtime
            ? { running: i.runtime.running, pid: i.runtime.pid || null, uptimeSeconds: i.runtime.running ? Number(i.runtime.uptimeSeconds) : null }
            : undefined,
        })),
      });
      return { serverTime: timestampFromDate(new Date()), heartbeatIntervalSeconds: deps.intervalSeconds, approved: isApproved(caller) };
    },
  };
}
