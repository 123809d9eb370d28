import { setTimeout as sleep } from "node:timers/promises";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { RolloutServerState, RolloutState, type RolloutSchema, type RolloutServerSchema, type RolloutService } from "../../gen/myosicam/panel/v1/rollout_pb.js";
import type { Knex } from "../lib/db.js";
import { isScoped, principalOf, writeDb, type ServerScope } from "../lib/principal.js";
import { timestampOf } from "../lib/timestamps.js";
import { whereInScope } from "./fleet-store.js";
import { listReleases } from "./releases.js";
import { compareVersions, releaseVersionPattern } from "../lib/releases/manifest.js";
import {
  advanceRollout,
  cancelRollout,
  rollbackTargets,
  rolloutCounts,
  selectRollout,
  selectRollouts,
  selectRolloutServers,
  setRolloutState,
  startRollout,
  type RolloutCounts,
  type RolloutRow,
  type RolloutServerRow,
} from "./rollouts.js";

const states: Record<RolloutRow["state"], RolloutState> = {
  running: RolloutState.RUNNING,
  paused: RolloutState.PAUSED,
  halted: RolloutState.HALTED,
  completed: RolloutState.COMPLETED,
  cancelled: RolloutState.CANCELLED,
};
const serverStates: Record<RolloutServerRow["state"], RolloutServerState> = {
  waiting: RolloutServerState.WAITING,
  sent: RolloutServerState.SENT,
  succeeded: RolloutServerState.SUCCEEDED,
  failed: RolloutServerState.FAILED,
  skipped: RolloutServerState.SKIPPED,
};

const rolloutMessage = (r: RolloutRow, c: RolloutCounts): MessageInitShape<typeof RolloutSchema> => ({
  id: r.id,
  version: r.version,
  state: states[r.state],
  canary: r.canary,
  batchPercent: r.batch_percent,
  maxFailures: r.max_failures,
  pauseOnFailure: r.pause_on_failure,
  total: c.total,
  waiting: c.waiting,
  sent: c.sent,
  succeeded: c.succeeded,
  failed: c.failed,
  skipped: c.skipped,
  batchesSent: r.batches_sent,
  haltedReason: r.halted_reason,
  createdBy: r.created_by,
  createdAt: timestampOf(r.created_at),
  updatedAt: timestampOf(r.updated_at),
  finishedAt: timestampOf(r.finished_at),
  rollbackOf: r.rollback_of ?? "",
});

const serverMessage = (s: RolloutServerRow): MessageInitShape<typeof RolloutServerSchema> => ({
  serverId: s.server_id,
  serverName: s.server_name,
  state: serverStates[s.state],
  fromVersion: s.from_version,
  targetVersion: s.target_version,
  batch: s.batch ?? -1,
  commandId: s.command_id ?? "",
  reason: s.reason,
  online: s.online_at_send ?? true,
});

/** How often WatchRollout looks again. */
const watchIntervalMs = 1000;

/** `myosicam.panel.v1.RolloutService` (handlers; the panel service authenticates, authorizes and audits). */
export function createRolloutService(deps: { db: Knex; crypto: Client<typeof CryptoService> }): ServiceImpl<typeof RolloutService> {
  const { db } = deps;

  /** A rollout the caller may see: for a scoped caller, only one whose servers are all in its scope. */
  const visible = async (trx: Knex, scope: ServerScope, id: string): Promise<RolloutRow> => {
    const rollout = await selectRollout(trx, id);
    if (rollout && (await whollyInScope(trx, scope, id))) return rollout;
    throw new ConnectError(`no rollout ${id}; see ListRollouts`, Code.NotFound);
  };
  const withCounts = async (trx: Knex, rollout: RolloutRow) => rolloutMessage(rollout, (await rolloutCounts(trx, [rollout.id])).get(rollout.id)!);

  return {
    async startRollout(req, ctx) {
      const principal = principalOf(ctx);
      const trx = writeDb(ctx, db);
      let serverIds = [...req.serverIds];
      if (serverIds.length > 0) {
        const inScope = new Set((await whereInScope(trx("servers"), principal.scope).whereIn("id", serverIds).select("id")).map((r: { id: string }) => r.id));
        const missing = serverIds.filter((id) => !inScope.has(id));
        if (missing.length > 0) throw new ConnectError(`no server ${missing.slice(0, 5).join(", ")}; see ServerService.ListServers`, Code.NotFound);
      } else {
        serverIds = (await whereInScope(trx("servers"), principal.scope).whereNot({ status: "revoked" }).select("id")).map((r: { id: string }) => r.id);
      }
      const id = await startRollout(trx, deps.crypto, {
        version: req.version,
        serverIds,
        named: req.serverIds.length > 0,
        canary: req.canary || 1,
        batchPercent: req.batchPercent || 10,
        maxFailures: req.maxFailures,
        pauseOnFailure: req.pauseOnFailure,
        createdBy: principal.name,
      });
      writeDb(ctx, db, `rollout:${id}`);
      return { rollout: await withCounts(trx, (await selectRollout(trx, id))!) };
    },

    async getRollout(req, ctx) {
      const rollout = await visible(db, principalOf(ctx).scope, req.id);
      return { rollout: await withCounts(db, rollout), servers: (await selectRolloutServers(db, req.id)).map(serverMessage) };
    },

    async listRollouts(req, ctx) {
      const { scope } = principalOf(ctx);
      const rows = await selectRollouts(db, req.limit || 50);
      const shown = [];
      for (const r of rows) if (await whollyInScope(db, scope, r.id)) shown.push(r);
      const counts = await rolloutCounts(
        db,
        shown.map((r) => r.id),
      );
      return { rollouts: shown.map((r) => rolloutMessage(r, counts.get(r.id)!)) };
    },

    async *watchRollout(req, ctx) {
      const { scope } = principalOf(ctx);
      await visible(db, scope, req.id);
      const seen = new Map<string, string>();
      let last = "";
      for (;;) {
        const rollout = (await selectRollout(db, req.id))!;
        const message = await withCounts(db, rollout);
        const servers = await selectRolloutServers(db, req.id);
        const changed = servers.filter((s) => seen.get(s.server_id) !== `${s.state}/${s.reason}`);
        for (const s of changed) seen.set(s.server_id, `${s.state}/${s.reason}`);
        const key = [
          rollout.state,
          rollout.batches_sent,
          rollout.halted_reason,
          message.waiting,
          message.sent,
          message.succeeded,
          message.failed,
          message.skipped,
        ].join("|");
        if (changed.length > 0 || key !== last) yield { rollout: message, servers: changed.map(serverMessage) };
        last = key;
        if (rollout.state === "completed" || (rollout.state === "cancelled" && !servers.some((s) => s.state === "sent"))) return;
        await sleep(watchIntervalMs, undefined, { signal: ctx.signal });
      }
    },

    async pauseRollout(req, ctx) {
      return { rollout: await changeState(ctx, req.id, (trx) => setRolloutState(trx, req.id, "paused")) };
    },
    async resumeRollout(req, ctx) {
      return {
        rollout: await changeState(ctx, req.id, async (trx) => {
          await setRolloutState(trx, req.id, "running");
          await advanceRollout(trx, deps.crypto, req.id);
        }),
      };
    },
    async cancelRollout(req, ctx) {
      return { rollout: await changeState(ctx, req.id, (trx) => cancelRollout(trx, req.id)) };
    },

    async rollBackRollout(req, ctx) {
      const principal = principalOf(ctx);
      const trx = writeDb(ctx, db, `rollout:${req.id}`);
      const rollout = await visible(trx, principal.scope, req.id);
      if (["running", "paused", "halted"].includes(rollout.state)) await cancelRollout(trx, req.id);
      const targets = await rollbackTargets(trx, req.id);
      if (targets.size === 0) throw new ConnectError(`rollout ${req.id} changed no server's version: there is nothing to roll back`, Code.FailedPrecondition);
      const id = await startRollout(trx, deps.crypto, {
        version: "previous",
        serverIds: [...targets.keys()],
        named: false,
        canary: req.canary || 1,
        batchPercent: req.batchPercent || 10,
        maxFailures: rollout.max_failures,
        pauseOnFailure: rollout.pause_on_failure,
        createdBy: principal.name,
        targets,
        rollbackOf: req.id,
      });
      writeDb(ctx, db, `rollout:${id}`);
      return { rollout: await withCounts(trx, (await selectRollout(trx, id))!) };
    },

    async countAgentVersions(_req, ctx) {
      const rows: Array<{ version: string | null; servers: string; online: string }> = await whereInScope(db("servers"), principalOf(ctx).scope)
        .whereNot({ status: "revoked" })
        .groupBy("agent_version")
        .select({ version: "agent_version" })
        .count({ servers: "*" })
        .select(db.raw("count(*) filter (where status = 'online') as online"));
      const versions = rows.map((r) => ({ version: r.version ?? "", servers: Number(r.servers), online: Number(r.online) }));
      const semver = (v: string) => releaseVersionPattern.test(v);
      versions.sort((a, b) =>
        semver(a.version) && semver(b.version)
          ? compareVersions(b.version, a.version)
          : semver(a.version)
            ? -1
            : semver(b.version)
              ? 1
              : b.version.localeCompare(a.version),
      );
      return { versions };
    },

    async listReleases() {
      return {
        releases: (await listReleases(db)).map((r) => ({
          version: r.version,
          target: r.target,
          sha256: r.sha256,
          size: BigInt(r.size),
          compressedSize: BigInt(r.compressedSize),
          keyId: r.keyId,
          builtAt: timestampFromDate(r.builtAt),
          uploadedAt: timestampFromDate(r.uploadedAt),
          uploadedBy: r.uploadedBy,
        })),
      };
    },
  };

  async function changeState(ctx: HandlerContext, id: string, change: (trx: Knex) => Promise<void>): Promise<MessageInitShape<typeof RolloutSchema>> {
    const trx = writeDb(ctx, db, `rollout:${id}`);
    await visible(trx, principalOf(ctx).scope, id);
    await change(trx);
    return withCounts(trx, (await selectRollout(trx, id))!);
  }
}

/** Whether every server of the rollout is in `scope` (always, for an unscoped caller). */
async function whollyInScope(db: Knex, scope: ServerScope, id: string): Promise<boolean> {
  if (!isScoped(scope)) return true;
  const outside = await db("rollout_servers as rs")
    .join("servers as servers", "servers.id", "rs.server_id")
    .where("rs.rollout_id", id)
    .whereNotExists(whereInScope(db("servers as inside").whereRaw("inside.id = servers.id").select(db.raw("1")), scope, "inside"))
    .first(db.raw("1 as x"));
  return !outside;
}
