import { InvalidArgumentError } from "commander";
import { RolloutServerState, RolloutService, RolloutState, type Rollout, type RolloutServer } from "../gen/myosicam/panel/v1/rollout_pb.js";
import { isoOf, printJson } from "./context.js";
import { findServer, panelApi } from "./panel-client.js";

const lower = (name: string | undefined) => (name ?? "unknown").toLowerCase();
const stateName = (s: RolloutState) => lower(RolloutState[s]);
const serverStateName = (s: RolloutServerState) => lower(RolloutServerState[s]);

function rolloutJson(r: Rollout) {
  return {
    id: r.id,
    version: r.version,
    state: stateName(r.state),
    canary: r.canary,
    batchPercent: r.batchPercent,
    maxFailures: r.maxFailures,
    pauseOnFailure: r.pauseOnFailure,
    total: r.total,
    waiting: r.waiting,
    sent: r.sent,
    succeeded: r.succeeded,
    failed: r.failed,
    skipped: r.skipped,
    batchesSent: r.batchesSent,
    haltedReason: r.haltedReason,
    rollbackOf: r.rollbackOf || null,
    createdBy: r.createdBy,
    createdAt: isoOf(r.createdAt),
    finishedAt: isoOf(r.finishedAt),
  };
}

const serverJson = (s: RolloutServer) => ({
  server: s.serverName,
  serverId: s.serverId,
  state: serverStateName(s.state),
  from: s.fromVersion,
  to: s.targetVersion,
  batch: s.batch,
  online: s.online,
  reason: s.reason,
});

const summary = (r: Rollout) =>
  `rollout ${r.id} to ${r.version}: ${stateName(r.state)} — ${r.succeeded}/${r.total} upgraded, ${r.sent} in progress, ${r.waiting} waiting, ${r.failed} failed${r.skipped ? `, ${r.skipped} skipped` : ""}, ${r.batchesSent} batch${r.batchesSent === 1 ? "" : "es"} sent${r.haltedReason ? `\n  ${r.haltedReason}` : ""}`;

/** Parses `--batch 10%` (or `10`): a share of the servers, 1–100 %. */
export function batchPercent(value: string): number {
  const m = /^(\d{1,3})%?$/.exec(value.trim());
  const n = m ? Number(m[1]) : Number.NaN;
  if (!(n >= 1 && n <= 100)) throw new InvalidArgumentError(`--batch takes a share of the servers from 1% to 100%, got "${value}"`);
  return n;
}

/** Follows a rollout until it ends (or halts, or pauses): one line per server change, then the summary. Exit 1 unless it completed without failure. */
async function follow(api: Awaited<ReturnType<typeof panelApi>>, id: string, json: boolean): Promise<void> {
  let last: Rollout | undefined;
  const controller = new AbortController();
  try {
    for await (const update of api.client(RolloutService).watchRollout({ id }, { timeoutMs: 0, signal: controller.signal })) {
      last = update.rollout;
      if (!json) {
        for (const s of update.servers) {
          if (s.state === RolloutServerState.WAITING) continue;
          process.stdout.write(
            `  ${s.serverName}: ${serverStateName(s.state)} (${s.fromVersion || "?"} → ${s.targetVersion})${s.reason ? ` — ${s.reason}` : ""}\n`,
          );
        }
      }
      if (last && (last.state === RolloutState.HALTED || last.state === RolloutState.PAUSED) && last.sent === 0) controller.abort();
    }
  } catch (err) {
    if (!controller.signal.aborted) throw err;
  }
  if (!last) return;
  if (last.state !== RolloutState.COMPLETED || last.failed > 0) process.exitCode = 1;
  if (json) printJson({ rollout: rolloutJson(last) });
  else process.stdout.write(`${summary(last)}\n`);
}

export async function rolloutStartCommand(options: {
  version: string;
  servers: string[];
  canary: number;
  batch: number;
  maxFailures: number;
  pauseOnFailure: boolean;
  follow: boolean;
  json: boolean;
}): Promise<void> {
  const api = await panelApi();
  const serverIds = [];
  for (const s of options.servers) serverIds.push((await findServer(api, s)).id);
  const { rollout } = await api.client(RolloutService).startRollout({
    version: options.version,
    serverIds,
    canary: options.canary,
    batchPercent: options.batch,
    maxFailures: options.maxFailures,
    pauseOnFailure: options.pauseOnFailure,
  });
  if (!options.follow) {
    if (options.json) return printJson({ rollout: rolloutJson(rollout!) });
    process.stdout.write(`${summary(rollout!)}\nfollow it: npx myosicam rollout show ${rollout!.id} --follow\n`);
    return;
  }
  if (!options.json) process.stdout.write(`${summary(rollout!)}\n`);
  await follow(api, rollout!.id, options.json);
}

export async function rolloutShowCommand(id: string, options: { follow: boolean; json: boolean }): Promise<void> {
  const api = await panelApi();
  if (options.follow) return follow(api, id, options.json);
  const { rollout, servers } = await api.client(RolloutService).getRollout({ id });
  if (options.json) return printJson({ rollout: rolloutJson(rollout!), servers: servers.map(serverJson) });
  process.stdout.write(`${summary(rollout!)}\n`);
  for (const s of servers) {
    process.stdout.write(
      `  ${s.serverName.padEnd(24)} ${serverStateName(s.state).padEnd(9)} ${s.fromVersion || "?"} → ${s.targetVersion}${s.batch >= 0 ? `  batch ${s.batch}` : ""}${s.online ? "" : "  (was offline)"}${s.reason ? `  ${s.reason}` : ""}\n`,
    );
  }
}

export async function rolloutListCommand(options: { json: boolean }): Promise<void> {
  const { rollouts } = await (await panelApi()).client(RolloutService).listRollouts({ limit: 50 });
  if (options.json) return printJson({ rollouts: rollouts.map(rolloutJson) });
  if (rollouts.length === 0) process.stdout.write("no rollouts yet: npx myosicam rollout start --version <x.y.z>\n");
  for (const r of rollouts) process.stdout.write(`${summary(r)}\n`);
}

/** pause, resume, cancel. */
export async function rolloutActionCommand(action: "pause" | "resume" | "cancel", id: string, options: { json: boolean }): Promise<void> {
  const client = (await panelApi()).client(RolloutService);
  const { rollout } =
    action === "pause" ? await client.pauseRollout({ id }) : action === "resume" ? await client.resumeRollout({ id }) : await client.cancelRollout({ id });
  if (options.json) return printJson({ rollout: rolloutJson(rollout!) });
  process.stdout.write(`${summary(rollout!)}\n`);
}

export async function rolloutRollbackCommand(id: string, options: { canary: number; batch: number; follow: boolean; json: boolean }): Promise<void> {
  const api = await panelApi();
  const { rollout } = await api.client(RolloutService).rollBackRollout({ id, canary: options.canary, batchPercent: options.batch });
  if (!options.follow) {
    if (options.json) return printJson({ rollout: rolloutJson(rollout!) });
    process.stdout.write(`rolled back: ${summary(rollout!)}\n`);
    return;
  }
  await follow(api, rollout!.id, options.json);
}
