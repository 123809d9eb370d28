import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import type { Knex } from "../lib/db.js";
import type { Logger } from "../lib/log.js";
import { insertCommands, requireReleases } from "./commands.js";

/**
 * Staged rollouts of agent releases (RolloutService): a rollout is planned once (its servers, in
 * name order, each with the version it runs and the one it goes to), then advanced by `tick` on
 * every panel process: one process at a time per rollout (its row locked, others skip it). A tick
 * settles what was sent from the upgrade commands' outcomes (an upgrade succeeds when its agent
 * heartbeats in the new version), halts on failures beyond the threshold, and when nothing is in
 * flight sends the next batch: the canary first, then `batch_percent` of the servers at a time,
 * online servers first; servers that are not online go last, with a long deadline, so that they
 * get the upgrade when they return. A server that goes offline during its upgrade gets the same
 * long deadline and no longer holds the next batch back.
 */

export type RolloutState = "running" | "paused" | "halted" | "completed" | "cancelled";
export type RolloutServerState = "waiting" | "sent" | "succeeded" | "failed" | "skipped";

export interface RolloutRow {
  id: string;
  version: string;
  state: RolloutState;
  canary: number;
  batch_percent: number;
  max_failures: number;
  pause_on_failure: boolean;
  failures_accepted: number;
  batches_sent: number;
  halted_reason: string;
  rollback_of: string | null;
  created_by: string;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}

export interface RolloutServerRow {
  rollout_id: string;
  server_id: string;
  server_name: string;
  position: number;
  state: RolloutServerState;
  from_version: string;
  target_version: string;
  batch: number | null;
  online_at_send: boolean | null;
  command_id: string | null;
  reason: string;
}

export type RolloutCounts = Record<RolloutServerState, number> & { total: number };

/** An upgrade sent to an online agent may take this long (download, restart, first heartbeat). */
export const onlineUpgradeTtlSeconds = 30 * 60;
/** An agent that is not online when its turn comes has this long to return. */
export const offlineUpgradeTtlSeconds = 7 * 86400;
/** How often each panel process advances the rollouts. */
export const rolloutTickMs = 2000;

const activeStates: RolloutState[] = ["running", "paused", "halted"];

export interface StartRolloutInput {
  version: string;
  /** Servers to upgrade, already limited to the caller's scope. */
  serverIds: readonly string[];
  /** Whether the caller named the servers (then a revoked or up-to-date one is an error to report). */
  named: boolean;
  canary: number;
  batchPercent: number;
  maxFailures: number;
  pauseOnFailure: boolean;
  createdBy: string;
  /** A roll back: each server's own target (the version it ran before). */
  targets?: ReadonlyMap<string, string>;
  rollbackOf?: string;
}

/** Plans a rollout and sends its canary batch; answers its id. */
export async function startRollout(db: Knex, crypto: Client<typeof CryptoService>, input: StartRolloutInput): Promise<string> {
  const id = randomUUID();
  await db.transaction(async (trx) => {
    const known: Array<{ id: string; name: string; status: string; agent_version: string | null; registered_at: Date | null }> = await trx("servers")
      .whereIn("id", [...input.serverIds])
      .whereNot({ status: "revoked" })
      .orderBy("name")
      .select("id", "name", "status", "agent_version", "registered_at");
    if (input.named && known.length < input.serverIds.length) {
      throw new ConnectError("some of the named servers are revoked or unknown; see ServerService.ListServers", Code.NotFound);
    }
    // Only agents that can take a command: registered, and approved (a pending one only heartbeats).
    const withoutAgent = known.filter((s) => !s.registered_at || s.status === "new" || s.status === "pending");
    if (input.named && withoutAgent.length > 0) {
      throw new ConnectError(
        `${withoutAgent
          .slice(0, 5)
          .map((s) => `${s.name} (${s.status === "pending" ? "waiting for approval" : "no agent installed yet"})`)
          .join(", ")} cannot take an upgrade; leave ${withoutAgent.length === 1 ? "it" : "them"} out`,
        Code.FailedPrecondition,
      );
    }
    const servers = known.filter((s) => !withoutAgent.includes(s));
    const targetOf = (serverId: string) => input.targets?.get(serverId) ?? input.version;
    const chosen = servers.filter((s) => s.agent_version !== targetOf(s.id));
    if (chosen.length === 0) {
      throw new ConnectError(
        servers.length === 0 ? "no enrolled server to upgrade" : `every chosen server's agent already runs ${input.version}`,
        Code.FailedPrecondition,
      );
    }
    const busy = await trx("rollout_servers as rs")
      .join("rollouts as r", "r.id", "rs.rollout_id")
      .join("servers as s", "s.id", "rs.server_id")
      .whereIn("r.state", activeStates)
      .whereIn("rs.state", ["waiting", "sent"])
      .whereIn(
        "rs.server_id",
        chosen.map((s) => s.id),
      )
      .select("s.name", "r.id as rollout_id", "r.state")
      .limit(5);
    if (busy.length > 0) {
      throw new ConnectError(
        `${busy.map((b: { name: string; rollout_id: string; state: string }) => `${b.name} is in rollout ${b.rollout_id} (${b.state})`).join("; ")}: cancel that rollout or let it finish first`,
        Code.FailedPrecondition,
      );
    }
    const byTarget = new Map<string, string[]>();
    for (const s of chosen) byTarget.set(targetOf(s.id), [...(byTarget.get(targetOf(s.id)) ?? []), s.id]);
    for (const [version, ids] of byTarget) await requireReleases(trx, ids, version);
    await trx("rollouts").insert({
      id,
      version: input.version,
      state: "running",
      canary: input.canary,
      batch_percent: input.batchPercent,
      max_failures: input.maxFailures,
      pause_on_failure: input.pauseOnFailure,
      rollback_of: input.rollbackOf ?? null,
      created_by: input.createdBy,
    });
    for (let i = 0; i < chosen.length; i += 1000) {
      await trx("rollout_servers").insert(
        chosen.slice(i, i + 1000).map((s, j) => ({
          rollout_id: id,
          server_id: s.id,
          position: i + j,
          state: "waiting",
          from_version: s.agent_version ?? "",
          target_version: targetOf(s.id),
        })),
      );
    }
  });
  await advanceRollout(db, crypto, id);
  return id;
}

/** Counts of a rollout's servers by state. */
export async function rolloutCounts(db: Knex, ids: readonly string[]): Promise<Map<string, RolloutCounts>> {
  const rows = await db("rollout_servers")
    .whereIn("rollout_id", [...ids])
    .groupBy("rollout_id", "state")
    .select("rollout_id", "state")
    .count<Array<{ rollout_id: string; state: RolloutServerState; n: string }>>({ n: "*" });
  const counts = new Map<string, RolloutCounts>();
  for (const id of ids) counts.set(id, { total: 0, waiting: 0, sent: 0, succeeded: 0, failed: 0, skipped: 0 });
  for (const r of rows) {
    const c = counts.get(r.rollout_id)!;
    c[r.state] = Number(r.n);
    c.total += Number(r.n);
  }
  return counts;
}

export async function selectRollout(db: Knex, id: string): Promise<RolloutRow | undefined> {
  return db("rollouts").where({ id }).first();
}

export async function selectRollouts(db: Knex, limit: number): Promise<RolloutRow[]> {
  return db("rollouts")
    .orderBy([{ column: "created_at", order: "desc" }, "id"])
    .limit(limit);
}

export async function selectRolloutServers(db: Knex, id: string): Promise<RolloutServerRow[]> {
  return db("rollout_servers as rs")
    .join("servers as s", "s.id", "rs.server_id")
    .where("rs.rollout_id", id)
    .orderBy("rs.position")
    .select("rs.*", { server_name: "s.name" });
}

/**
 * Advances one rollout (see the module's comment). Skipped when another process holds it right
 * now; answers whether anything changed.
 */
export async function advanceRollout(db: Knex, crypto: Client<typeof CryptoService>, id: string, log?: Logger): Promise<boolean> {
  return db.transaction(async (trx) => {
    const rollout: RolloutRow | undefined = await trx("rollouts").where({ id }).forUpdate().skipLocked().first();
    if (!rollout) return false;
    let changed = false;
    // What was sent and has ended: the command's outcome (succeeded on the agent's heartbeat in the new version).
    const settled = await trx.raw(
      `update rollout_servers rs
          set state = case when c.status = 'succeeded' then 'succeeded' else 'failed' end,
              reason = case when c.status = 'succeeded' then ''
                            when c.status = 'expired' then 'the agent did not take the upgrade before its deadline (it was offline, or could not download it)'
                            else coalesce(nullif(c.failure_code, '') || ': ', '') || c.result end,
              updated_at = now()
         from commands c
        where rs.rollout_id = ? and rs.state = 'sent' and c.id = rs.command_id and c.status in ('succeeded', 'failed', 'expired')`,
      [id],
    );
    changed ||= (settled.rowCount ?? 0) > 0;
    if (rollout.state !== "cancelled" && rollout.state !== "completed") {
      const revoked = await trx.raw(
        `update rollout_servers rs set state = 'skipped', reason = 'the server was revoked', updated_at = now()
           from servers s where rs.rollout_id = ? and rs.state = 'waiting' and s.id = rs.server_id and s.status = 'revoked'`,
        [id],
      );
      changed ||= (revoked.rowCount ?? 0) > 0;
    }
    if (activeStates.includes(rollout.state)) {
      // Sent to a server that has gone offline since: it gets the upgrade when it returns (a week
      // to do so); the rollout does not wait on it meanwhile.
      const gone = await trx.raw(
        `update rollout_servers rs set online_at_send = false, updated_at = now(),
                reason = 'went offline during its upgrade: it gets it when it returns'
           from servers s
          where rs.rollout_id = ? and rs.state = 'sent' and rs.online_at_send and s.id = rs.server_id and s.status <> 'online'
          returning rs.command_id`,
        [id],
      );
      const commandIds = (gone.rows as Array<{ command_id: string }>).map((r) => r.command_id);
      if (commandIds.length > 0) {
        await trx("commands")
          .whereIn("id", commandIds)
          .whereIn("status", ["pending", "delivered"])
          .update({ deadline: trx.raw("greatest(deadline, now() + make_interval(secs => ?))", [offlineUpgradeTtlSeconds]) });
        changed = true;
      }
    }
    if (!activeStates.includes(rollout.state)) {
      if (changed) await trx("rollouts").where({ id }).update({ updated_at: trx.fn.now() });
      return changed;
    }
    const counts = (await rolloutCounts(trx, [id])).get(id)!;
    // What the next batch waits for: upgrades out to servers that are online.
    const inFlight = Number(
      (await trx("rollout_servers").where({ rollout_id: id, state: "sent", online_at_send: true }).count<Array<{ n: string }>>({ n: "*" }))[0]!.n,
    );
    const failedSinceResume = counts.failed - rollout.failures_accepted;
    const update: Record<string, unknown> = {};
    if (rollout.state === "running" && failedSinceResume > rollout.max_failures) {
      update.state = "halted";
      update.halted_reason = `${failedSinceResume} server${failedSinceResume === 1 ? "" : "s"} failed (more than ${rollout.max_failures} allowed): ${await failureSummary(trx, id)}`;
      log?.warn({ rolloutId: id, failed: failedSinceResume }, "rollout halted");
    } else if (rollout.state === "running" && rollout.pause_on_failure && failedSinceResume > 0 && inFlight === 0) {
      update.state = "paused";
      update.halted_reason = `paused after batch ${rollout.batches_sent - 1} (pause on failure): ${await failureSummary(trx, id)}`;
    } else if (counts.waiting === 0 && counts.sent === 0 && rollout.state !== "halted") {
      update.state = "completed";
      update.finished_at = trx.fn.now();
      log?.info({ rolloutId: id, ...counts }, "rollout completed");
    } else if (rollout.state === "running" && inFlight === 0 && counts.waiting > 0) {
      await sendBatch(trx, crypto, rollout, counts.total);
      update.batches_sent = rollout.batches_sent + 1;
    }
    if (changed || Object.keys(update).length > 0)
      await trx("rollouts")
        .where({ id })
        .update({ ...update, updated_at: trx.fn.now() });
    return changed || Object.keys(update).length > 0;
  });
}

/** "name: reason; …" of the failed servers (the first 10). */
async function failureSummary(db: Knex, id: string): Promise<string> {
  const failed = await db("rollout_servers as rs")
    .join("servers as s", "s.id", "rs.server_id")
    .where({ "rs.rollout_id": id, "rs.state": "failed" })
    .orderBy("rs.updated_at")
    .select("s.name", "rs.reason")
    .limit(11);
  const listed = failed.slice(0, 10).map((f: { name: string; reason: string }) => `${f.name}: ${f.reason}`);
  return `${listed.join("; ")}${failed.length > 10 ? "; …" : ""}`;
}

/** Sends the next batch: the canary, then a share of all servers; online servers first, the others last with a long deadline. */
async function sendBatch(trx: Knex, crypto: Client<typeof CryptoService>, rollout: RolloutRow, total: number): Promise<void> {
  const size = rollout.batches_sent === 0 ? Math.max(1, rollout.canary) : Math.max(1, Math.ceil((total * rollout.batch_percent) / 100));
  const waiting = () =>
    trx("rollout_servers as rs")
      .join("servers as s", "s.id", "rs.server_id")
      .where({ "rs.rollout_id": rollout.id, "rs.state": "waiting" })
      .orderBy("rs.position")
      .select("rs.server_id", "rs.target_version");
  let online = true;
  let batch: Array<{ server_id: string; target_version: string }> = await waiting().where("s.status", "online").limit(size);
  if (batch.length === 0) {
    // Only servers that are not online are left: all of them now, to be taken when they return.
    online = false;
    batch = await waiting();
  }
  const byVersion = new Map<string, string[]>();
  for (const b of batch) byVersion.set(b.target_version, [...(byVersion.get(b.target_version) ?? []), b.server_id]);
  for (const [version, serverIds] of byVersion) {
    const created = await insertCommands(
      trx,
      crypto,
      serverIds.map((serverId) => ({ serverId, instance: "", payload: { version } })),
      { kind: "upgrade_agent", createdBy: `rollout ${rollout.id}`, ttlSeconds: online ? onlineUpgradeTtlSeconds : offlineUpgradeTtlSeconds },
    );
    await trx.raw(
      `update rollout_servers rs set state = 'sent', batch = ?, online_at_send = ?, command_id = c.command_id, updated_at = now()
         from unnest(?::uuid[], ?::uuid[]) as c(server_id, command_id)
        where rs.rollout_id = ? and rs.server_id = c.server_id`,
      [rollout.batches_sent, online, created.map((c) => c.serverId), created.map((c) => c.id), rollout.id] as unknown as readonly Knex.RawBinding[],
    );
  }
}

/** Rollouts that need a tick: active ones, and ended ones whose sent upgrades have not settled. */
export async function rolloutsToAdvance(db: Knex): Promise<string[]> {
  const rows = await db("rollouts as r")
    .whereIn("r.state", activeStates)
    .orWhereExists(db("rollout_servers as rs").whereRaw("rs.rollout_id = r.id").where("rs.state", "sent"))
    .select("r.id");
  return rows.map((r: { id: string }) => r.id);
}

/** Moves an active rollout to `state` (pause, resume); FailedPrecondition when it cannot. */
export async function setRolloutState(db: Knex, id: string, to: "paused" | "running"): Promise<void> {
  await db.transaction(async (trx) => {
    const rollout: RolloutRow | undefined = await trx("rollouts").where({ id }).forUpdate().first();
    if (!rollout) throw new ConnectError(`no rollout ${id}`, Code.NotFound);
    const allowed = to === "paused" ? ["running"] : ["paused", "halted"];
    if (!allowed.includes(rollout.state))
      throw new ConnectError(`rollout ${id} is ${rollout.state}: it cannot be ${to === "paused" ? "paused" : "resumed"}`, Code.FailedPrecondition);
    const update: Record<string, unknown> = { state: to, updated_at: trx.fn.now() };
    if (to === "running") {
      // Resuming accepts the failures so far: only new ones count against the threshold.
      const counts = (await rolloutCounts(trx, [id])).get(id)!;
      update.failures_accepted = counts.failed;
      update.halted_reason = "";
    }
    await trx("rollouts").where({ id }).update(update);
  });
}

/**
 * Cancels a rollout: servers not yet sent are skipped; upgrades not yet delivered are withdrawn
 * (their commands end as expired); those already delivered run to their end.
 */
export async function cancelRollout(db: Knex, id: string): Promise<void> {
  await db.transaction(async (trx) => {
    const rollout: RolloutRow | undefined = await trx("rollouts").where({ id }).forUpdate().first();
    if (!rollout) throw new ConnectError(`no rollout ${id}`, Code.NotFound);
    if (!activeStates.includes(rollout.state)) throw new ConnectError(`rollout ${id} is ${rollout.state} already`, Code.FailedPrecondition);
    await trx("rollout_servers")
      .where({ rollout_id: id, state: "waiting" })
      .update({ state: "skipped", reason: "the rollout was cancelled", updated_at: trx.fn.now() });
    const withdrawn = await trx.raw(
      `update commands c set status = 'expired', finished_at = now(), result = 'withdrawn: the rollout was cancelled before the agent took it'
         from rollout_servers rs where rs.rollout_id = ? and rs.state = 'sent' and c.id = rs.command_id and c.status = 'pending'
       returning c.id`,
      [id],
    );
    const ids = (withdrawn.rows as Array<{ id: string }>).map((r) => r.id);
    if (ids.length > 0) {
      await trx("rollout_servers")
        .where({ rollout_id: id })
        .whereIn("command_id", ids)
        .update({ state: "skipped", reason: "withdrawn before the agent took it: the rollout was cancelled", updated_at: trx.fn.now() });
    }
    await trx("rollouts").where({ id }).update({ state: "cancelled", finished_at: trx.fn.now(), updated_at: trx.fn.now() });
  });
}

/** The servers a roll back returns, each to the version it ran before the rollout. */
export async function rollbackTargets(db: Knex, id: string): Promise<Map<string, string>> {
  const rows = await db("rollout_servers")
    .where({ rollout_id: id })
    .whereIn("state", ["sent", "succeeded", "failed"])
    .whereNot("from_version", "")
    .whereRaw("from_version <> target_version")
    .select("server_id", "from_version");
  return new Map(rows.map((r: { server_id: string; from_version: string }) => [r.server_id, r.from_version]));
}

/**
 * Advances every rollout that needs it, every `rolloutTickMs`, in this process; stops with `stop`.
 * An error (the database away) is logged once per kind and retried at the next tick.
 */
export function startRolloutTicker(db: Knex, crypto: Client<typeof CryptoService>, log: Logger): { stop(): Promise<void> } {
  let running: Promise<void> = Promise.resolve();
  let lastError = "";
  const tick = async () => {
    try {
      for (const id of await rolloutsToAdvance(db)) await advanceRollout(db, crypto, id, log);
      lastError = "";
    } catch (err) {
      const message = (err as Error).message;
      if (message !== lastError) log.warn({ err: message }, "could not advance rollouts; trying again");
      lastError = message;
    }
  };
  const timer = setInterval(() => {
    running = running.then(tick);
  }, rolloutTickMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
