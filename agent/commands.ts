import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { AccountChangeStatus, AccountOperation, CommandKind, CommandOutcome, type AgentService, type Command } from "../gen/myosicam/agent/v1/agent_pb.js";
import { type Account, AccountSchema } from "../gen/myosicam/agent/v1/snapshot_pb.js";
import { writeFileAtomic } from "../services/lib/atomic-file.js";
import { retryDelayMs } from "../services/lib/backoff.js";
import type { Logger } from "../services/lib/log.js";
import { type AccountChangeResult, applyAccounts, reloadInstanceUsers } from "./apply/apply-accounts.js";
import type { UnloadedChanges } from "./unloaded-changes.js";
import type { UpgradeOutcome } from "./upgrade.js";
import { applyConfig } from "./apply/apply-config.js";
import { controlUnit, runCommand, type CommandRunner, type ServiceVerb } from "./apply/service-control.js";
import type { DiscoveredInstance } from "./discovery/discover.js";
import { commandStreamSilenceMs, retryBaseMs, retryCapMs } from "./timing.js";
import { agentVersion } from "./version.js";

/** How many executed command ids (with their outcome) the agent remembers, across restarts too. */
export const rememberedCommands = 500;

interface Outcome {
  /** upgrade_agent: installed and switched; the agent restarts into it instead of reporting (the new version does). */
  restart?: boolean;
  succeeded: boolean;
  failureCode: string;
  detail: string;
  /** apply_config: changed keys that take effect only after a restart. */
  restartRequiredKeys?: string[];
  /** apply_accounts: one result per change. */
  accountResults?: AccountChangeResult[];
  /**
   * The instance may have changed and the result shows how (each applied account as it now is):
   * what follows is decided once the result is reported, not before (`changeReported`).
   */
  resyncAfterResult?: boolean;
  /** apply_accounts of a change set: what the change did to the instance's content hash (`ownChange`), when the agent could tell. */
  contentHash?: { before: string; after: string };
}

/** Of the remembered outcomes, only the newest keep their per-account results (they can be large). */
const rememberedAccountResults = 20;

const changeStatuses = {
  applied: AccountChangeStatus.APPLIED,
  unchanged: AccountChangeStatus.UNCHANGED,
  failed: AccountChangeStatus.FAILED,
} as const;

/** Keys a report can carry (the contract's pattern); a key OScam ignores anyway is left out. */
const reportableKey = /^[A-Za-z0-9_]{1,64}$/;
const entriesMessage = (entries: Record<string, string> | undefined) =>
  entries && {
    entries: Object.entries(entries)
      .filter(([key, value]) => reportableKey.test(key) && value.length <= 4096)
      .map(([key, value]) => ({ key, value })),
  };

/** The per-change results as the report carries them. */
function accountResultsMessage(results: readonly AccountChangeResult[] | undefined) {
  return (results ?? []).map((r) => ({
    index: r.index,
    status: changeStatuses[r.status],
    failureCode: r.failureCode,
    detail: r.detail.slice(0, 4000),
    before: entriesMessage(r.before),
    after: entriesMessage(r.after),
    followedBy: r.followedBy ?? "",
    account: r.account,
  }));
}

/**
 * The accounts an apply_accounts command changed, as its results show them to the panel: each
 * applied change's user with the account it now is, or undefined when it deleted it. Undefined when
 * an applied change shows neither (the panel's view then waits for the resync).
 */
function changedAccounts(command: Command, results: readonly AccountChangeResult[] | undefined): Map<string, Account | undefined> | undefined {
  if (command.payload.case !== "applyAccounts" || !results) return undefined;
  const changes = command.payload.value.changes;
  const changed = new Map<string, Account | undefined>();
  for (const r of results) {
    if (r.status !== "applied") continue;
    const change = changes[r.index];
    if (!change) return undefined;
    // The panel's view follows an account only under the change's own name.
    if (r.account?.user === change.user) changed.set(change.user, create(AccountSchema, r.account));
    else if (change.operation === AccountOperation.DELETE && !r.after) changed.set(change.user, undefined);
    else return undefined;
  }
  return changed;
}

/** What became of the content hash a change's result carried: taken by the panel, refused, or none carried. */
export type ReportedHash = "taken" | "refused" | "none";

/** What the agent can run; a kind it cannot is reported as failed, never as done. */
export type CommandExecutor = (command: Command) => Promise<Outcome>;

/**
 * The executor: every command kind. A resync follows every change, so the panel sees the
 * instance as it is now, unless the change's result already showed the panel all of it (the
 * panel took the instance's new hash: `changeReported`).
 */
export function createExecutor(deps: {
  resync: () => Promise<void>;
  /** Resolves when the sync under way now (if any) has ended. */
  syncSettled: () => Promise<void>;
  discover: () => Promise<DiscoveredInstance[]>;
  run?: CommandRunner;
  /** Changes written that OScam has not loaded, shared with the syncer. */
  unloaded?: UnloadedChanges;
  /** upgrade_agent (agent/upgrade.ts). */
  upgrade?: (command: Command) => Promise<UpgradeOutcome>;
  /** What an account change made the instance's content hash, if only its accounts changed (the syncer's `ownChange`). */
  ownChange?: (instance: DiscoveredInstance, changed: ReadonlyMap<string, Account | undefined>) => Promise<{ before: string; after: string } | undefined>;
}): CommandExecutor {
  /**
   * Runs `apply` on the command's instance, or says it is not on this host; then a resync when it
   * may have changed something: `before` the result is reported, or `after` it for a result that
   * itself shows the change (account changes of a change set: that result also says what the
   * change made the instance's hash, when it can, and no sync follows if the panel took it). A
   * result that waits for its resync waits in the panel's sync queue: a change to 1,000 servers
   * took 6.5 s instead of about 4 (docs/sizing.md). A sync that was under way is let end first,
   * so a snapshot read before the change never reaches the panel after its result.
   */
  const onInstance = async (
    command: Command,
    apply: (instance: DiscoveredInstance) => Promise<Outcome>,
    resync: "before" | "after" | "none" = "before",
  ): Promise<Outcome> => {
    const instance = (await deps.discover()).find((i) => i.name === command.instance);
    if (!instance) return { succeeded: false, failureCode: "instance_not_found", detail: `no OScam instance "${command.instance}" on this host` };
    const outcome = await apply(instance);
    if (resync === "before") await deps.resync().catch(() => {});
    if (resync !== "after") return outcome;
    await deps.syncSettled();
    const changed = changedAccounts(command, outcome.accountResults);
    const contentHash = changed && (await deps.ownChange?.(instance, changed).catch(() => undefined));
    return { ...outcome, resyncAfterResult: true, ...(contentHash ? { contentHash } : {}) };
  };
  const missingPayload = (kind: string): Outcome => ({ succeeded: false, failureCode: "validation_failed", detail: `${kind} without its changes` });
  return async (command) => {
    const payload = command.payload;
    switch (command.kind) {
      case CommandKind.RESYNC:
        await deps.resync();
        return { succeeded: true, failureCode: "", detail: "resynced: every instance's snapshot was sent again" };
      case CommandKind.APPLY_ACCOUNTS:
        if (payload.case !== "applyAccounts") return missingPayload("apply_accounts");
        // Per-change results are for change sets (independent changes); an all-or-nothing command is answered as a whole.
        return onInstance(
          command,
          async (i) => {
            const outcome = await applyAccounts(i, payload.value, deps.unloaded);
            return payload.value.independent ? outcome : { ...outcome, accountResults: undefined };
          },
          payload.value.independent ? "after" : "before",
        );
      case CommandKind.APPLY_CONFIG:
        return payload.case === "applyConfig" ? onInstance(command, (i) => applyConfig(i, payload.value)) : missingPayload("apply_config");
      case CommandKind.RELOAD:
        return onInstance(command, (i) => reloadInstanceUsers(i, deps.unloaded), "none");
      case CommandKind.START:
      case CommandKind.STOP:
      case CommandKind.RESTART: {
        const outcome = await controlInstance(command, deps.discover, deps.run ?? runCommand);
        await deps.resync().catch(() => {});
        return outcome;
      }
      case CommandKind.UPGRADE_AGENT: {
        if (!deps.upgrade) break;
        const outcome = await deps.upgrade(command);
        return outcome.restart ? { restart: true, succeeded: false, failureCode: "", detail: outcome.detail } : outcome;
      }
    }
    return {
      succeeded: false,
      failureCode: "not_supported",
      detail: `this agent version (${agentVersion}) cannot run ${CommandKind[command.kind]} commands`,
    };
  };
}

const verbs: Partial<Record<CommandKind, ServiceVerb>> = { [CommandKind.START]: "start", [CommandKind.STOP]: "stop", [CommandKind.RESTART]: "restart" };

/**
 * start/stop/restart through systemd, then the state checked (not just the exit code): running
 * with a pid after start and restart (a new pid after restart), stopped after stop.
 */
async function controlInstance(command: Command, discover: () => Promise<DiscoveredInstance[]>, run: CommandRunner): Promise<Outcome> {
  const verb = verbs[command.kind]!;
  const before = (await discover()).find((i) => i.name === command.instance);
  if (!before) return { succeeded: false, failureCode: "instance_not_found", detail: `no OScam instance "${command.instance}" on this host` };
  if (!before.unit)
    return {
      succeeded: false,
      failureCode: "no_systemd_unit",
      detail: `OScam "${command.instance}" is not run by a systemd unit; start, stop and restart go through systemd`,
    };
  const result = await controlUnit(verb, before.unit, run);
  if (result.code !== 0)
    return { succeeded: false, failureCode: "systemctl_failed", detail: `systemctl ${verb} ${before.unit} failed (exit ${result.code}): ${result.output}` };
  const wantRunning = verb !== "stop";
  const deadline = Date.now() + 15_000;
  let after = before;
  for (;;) {
    after = (await discover()).find((i) => i.name === command.instance) ?? after;
    const settled = after.running === wantRunning && (verb !== "restart" || after.pid !== before.pid);
    if (settled) break;
    if (Date.now() > deadline) {
      return {
        succeeded: false,
        failureCode: "state_mismatch",
        detail: `systemctl ${verb} ${before.unit} succeeded, but OScam is ${after.running ? `running (pid ${after.pid})` : "not running"}`,
      };
    }
    await sleep(250);
  }
  return {
    succeeded: true,
    failureCode: "",
    detail: after.running ? `OScam "${command.instance}" is running (pid ${after.pid})` : `OScam "${command.instance}" is stopped`,
  };
}

/** How often a result is sent on the open stream before the stream is given up and opened again. */
const resultAttempts = 5;

/**
 * Sends a command's result. A refusal for now (`unavailable`: the panel busy, with its retry hint,
 * or its database away) or a deadline is sent again after the hint, on the stream that is open,
 * rather than breaking it: after a fan-out thousands of agents answer at once, and if each one
 * reconnected (a TLS handshake apiece) that would keep the panel busy. The panel takes a result
 * sent twice as once. Past `resultAttempts` the error breaks the stream (the command comes again).
 */
export async function sendResult<T>(send: () => Promise<T>, signal: AbortSignal): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await send();
    } catch (err) {
      const e = ConnectError.from(err);
      const forNow = e.code === Code.Unavailable || e.code === Code.DeadlineExceeded;
      if (!forNow || signal.aborted || attempt + 1 >= resultAttempts) throw err;
      await sleep(retryDelayMs(e, attempt, retryBaseMs, retryCapMs), undefined, { signal });
    }
  }
}

/**
 * The messages of a server stream, ending it through `abort` (with a reason that says so) when none
 * arrives within `silenceMs` of being waited for. Only the wait counts: the time the consumer
 * spends on a message (running a command) does not.
 */
export async function* withSilenceLimit<T>(messages: AsyncIterable<T>, silenceMs: number, abort: (reason: ConnectError) => void): AsyncGenerator<T> {
  const iterator = messages[Symbol.asyncIterator]();
  try {
    for (;;) {
      const timer = setTimeout(
        () =>
          abort(
            new ConnectError(
              `the command stream carried nothing for ${Math.round(silenceMs / 1000)} s (the panel sends a keepalive every 25 s)`,
              Code.Unavailable,
            ),
          ),
        silenceMs,
      );
      let next: IteratorResult<T>;
      try {
        next = await iterator.next();
      } finally {
        clearTimeout(timer);
      }
      if (next.done) return;
      yield next.value;
    }
  } finally {
    // Not awaited: a stream hung in the middle of a read would hold this end with it.
    iterator.return?.()?.catch(() => {});
  }
}

/**
 * The agent's command stream: one outbound server stream (Subscribe), reopened with full-jitter
 * backoff after an error and after a clean end. Commands run one at a time, in order. A command
 * id seen before (a redelivery) is acknowledged with its remembered outcome, not run again; the
 * ids survive restarts (`<state dir>/commands.json`). A result turned away for now is sent again
 * on the open stream (sendResult). Logs one line per change of state.
 */
export async function runCommandStream(options: {
  client: () => Client<typeof AgentService>;
  execute: CommandExecutor;
  stateDir: string;
  log: Logger;
  signal: AbortSignal;
  /** An upgrade was switched to: the agent must exit so that its service manager starts the new version. */
  onRestart?: () => void;
  /** How long the stream may be silent while the agent waits on it (default `commandStreamSilenceMs`). */
  silenceMs?: number;
  /**
   * The result of a command that asks for a sync after it (`resyncAfterResult`) is reported, with
   * what became of the instance's hash it carried: `taken` by the panel (which then holds the
   * instance as it is: no sync needs to follow), `refused` (the panel held another), or `none`
   * carried.
   */
  changeReported?: (change: { instance: string; hash: ReportedHash }) => unknown;
}): Promise<void> {
  const { log, signal } = options;
  const file = join(options.stateDir, "commands.json");
  const remembered = new Map<string, Outcome>(Object.entries(JSON.parse(await readFile(file, "utf8").catch(() => "{}")) as Record<string, Outcome>));
  const remember = async (id: string, outcome: Outcome) => {
    remembered.set(id, outcome);
    while (remembered.size > rememberedCommands) remembered.delete(remembered.keys().next().value!);
    const newest = [...remembered.keys()].slice(-rememberedAccountResults);
    for (const [key, value] of remembered) if (value.accountResults && !newest.includes(key)) remembered.set(key, { ...value, accountResults: undefined });
    await writeFileAtomic(file, JSON.stringify(Object.fromEntries(remembered)), 0o600);
  };
  let state: "connecting" | "open" | "broken" = "connecting";
  let failures = 0;
  while (!signal.aborted) {
    let refusal: ConnectError | undefined;
    const silent = new AbortController();
    try {
      const stream = options.client().subscribe({ agentVersion }, { signal: AbortSignal.any([signal, silent.signal]), timeoutMs: 0 });
      for await (const res of withSilenceLimit(stream, options.silenceMs ?? commandStreamSilenceMs, (reason) => silent.abort(reason))) {
        if (state !== "open") log.info("command stream open");
        state = "open";
        failures = 0;
        if (res.message.case !== "command") continue;
        const command = res.message.value;
        let outcome = remembered.get(command.id);
        if (outcome) log.info({ commandId: command.id }, "command delivered again: acknowledged without running it twice");
        else {
          log.info({ commandId: command.id, kind: CommandKind[command.kind], instance: command.instance }, "running command");
          outcome = await options
            .execute(command)
            .catch((err: unknown) => ({ succeeded: false, failureCode: "agent_error", detail: (err as Error).message.slice(0, 4000) }));
          if (outcome.restart) {
            // Neither remembered nor reported: the new version gets the command again and answers it.
            options.onRestart?.();
            return;
          }
          await remember(command.id, outcome);
        }
        const result = {
          commandId: command.id,
          outcome: outcome.succeeded ? CommandOutcome.SUCCEEDED : CommandOutcome.FAILED,
          failureCode: outcome.failureCode,
          detail: outcome.detail,
          restartRequiredKeys: outcome.restartRequiredKeys ?? [],
          accountResults: accountResultsMessage(outcome.accountResults),
          contentHash: outcome.contentHash,
        };
        const answer = await sendResult(() => options.client().reportResult(result), signal);
        if (outcome.resyncAfterResult) {
          const hash: ReportedHash = !outcome.contentHash ? "none" : answer.contentHashTaken ? "taken" : "refused";
          void options.changeReported?.({ instance: command.instance, hash });
        }
      }
      // A clean end (a panel restart, a proxy): reconnect like after an error.
      if (state !== "broken") log.warn("command stream ended; reconnecting");
      state = "broken";
    } catch (err) {
      if (signal.aborted) break;
      refusal = ConnectError.from(silent.signal.aborted ? silent.signal.reason : err);
      if (state !== "broken") log.warn({ reason: refusal.rawMessage }, "command stream broken; reconnecting with backoff");
      state = "broken";
    }
    // A panel that refused the stream under load said when to come back: not sooner.
    await sleep(retryDelayMs(refusal, failures++, retryBaseMs, retryCapMs), undefined, { signal }).catch(() => {});
  }
}
