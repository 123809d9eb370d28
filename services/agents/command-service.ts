import { toJson, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client, type ServiceImpl } from "@connectrpc/connect";
import { setTimeout as sleep } from "node:timers/promises";
import { ApplyAccountsSchema, ApplyConfigSchema, CommandKind, UpgradeAgentSchema } from "../../gen/myosicam/agent/v1/agent_pb.js";
import type { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { CommandStatus, type CommandSchema, type CommandService, type SendCommandRequest } from "../../gen/myosicam/panel/v1/command_pb.js";
import type { Knex } from "../lib/db.js";
import { badPageToken } from "../lib/paging.js";
import { timestampOf } from "../lib/timestamps.js";
import { principalOf, writeDb } from "../lib/principal.js";
import { commandKinds, createCommands, type CommandKindName } from "./commands.js";
import { selectCommandPage, selectCommandsInScope, selectServersInScope } from "./fleet-store.js";

const statuses = {
  pending: CommandStatus.PENDING,
  delivered: CommandStatus.DELIVERED,
  succeeded: CommandStatus.SUCCEEDED,
  failed: CommandStatus.FAILED,
  expired: CommandStatus.EXPIRED,
} as const;
type StatusName = keyof typeof statuses;
const statusNames = new Map<CommandStatus, StatusName>(Object.entries(statuses).map(([n, v]) => [v, n as StatusName]));
const kindNames = new Map<CommandKind, CommandKindName>(Object.entries(commandKinds).map(([n, v]) => [v, n as CommandKindName]));
const finalStatuses: readonly string[] = ["succeeded", "failed", "expired"];

/** How often WatchCommands looks at its commands again. */
const watchIntervalMs = 250;

interface CommandRow {
  id: string;
  server_id: string;
  server_name: string;
  instance: string;
  kind: CommandKindName;
  status: StatusName;
  result: string;
  failure_code: string;
  created_by: string;
  created_at: Date;
  delivered_at: Date | null;
  finished_at: Date | null;
  deadline: Date;
  /** created_at to the microsecond, as PostgreSQL writes it (pages only). */
  cursor_at?: string;
}

export function commandMessage(r: CommandRow): MessageInitShape<typeof CommandSchema> {
  return {
    id: r.id,
    serverId: r.server_id,
    serverName: r.server_name,
    instance: r.instance,
    kind: commandKinds[r.kind] ?? CommandKind.UNSPECIFIED,
    status: statuses[r.status],
    result: r.result ?? "",
    failureCode: r.failure_code ?? "",
    createdBy: r.created_by,
    createdAt: timestampOf(r.created_at),
    deliveredAt: timestampOf(r.delivered_at),
    finishedAt: timestampOf(r.finished_at),
    deadline: timestampOf(r.deadline),
  };
}

const encodeCursor = (r: CommandRow) => Buffer.from(JSON.stringify([r.cursor_at, r.id])).toString("base64url");
function decodeCursor(token: string): { createdAt: string; id: string } | undefined {
  if (token === "") return undefined;
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as [string, string];
    if (typeof createdAt !== "string" || !/^\d{4}-\d{2}-\d{2} [\d:.]+[+-]\d{2}(:\d{2})?$/.test(createdAt) || !/^[0-9a-f-]{36}$/.test(id)) {
      throw new Error("bad cursor");
    }
    return { createdAt, id };
  } catch {
    throw badPageToken();
  }
}

/** Handlers of `myosicam.panel.v1.CommandService`; servers outside the caller's scope are NotFound. */
/** The payload field each kind that takes one needs (named as the kind in the contract). */
const payloadCases: Partial<Record<CommandKindName, SendCommandRequest["payload"]["case"]>> = {
  apply_accounts: "applyAccounts",
  apply_config: "applyConfig",
  upgrade_agent: "upgradeAgent",
};

export function createCommandService(deps: { db: Knex; crypto: Client<typeof CryptoService> }): ServiceImpl<typeof CommandService> {
  const { db } = deps;
  return {
    async sendCommand(req, ctx) {
      const principal = principalOf(ctx);
      const kind = kindNames.get(req.kind);
      if (!kind) throw new ConnectError("kind: choose a command kind", Code.InvalidArgument);
      let payload: JsonValue | undefined;
      if (req.payload.case === "applyAccounts") payload = toJson(ApplyAccountsSchema, req.payload.value);
      else if (req.payload.case === "applyConfig") payload = toJson(ApplyConfigSchema, req.payload.value);
      else if (req.payload.case === "upgradeAgent") payload = toJson(UpgradeAgentSchema, req.payload.value);
      const wants = payloadCases[kind];
      if (wants !== req.payload.case) {
        throw new ConnectError(wants ? `${kind} needs its payload in ${kind}` : `${kind} takes no payload`, Code.InvalidArgument);
      }
      if (req.ttlSeconds !== 0 && req.ttlSeconds < 10) throw new ConnectError("ttl_seconds: at least 10 (or 0 for 15 minutes)", Code.InvalidArgument);
      const serverIds = [...new Set(req.targets.map((t) => t.serverId))];
      const trx = writeDb(ctx, db);
      const visible = new Set((await selectServersInScope(trx, principal.scope, serverIds)).map((s) => s.id));
      const missing = serverIds.filter((id) => !visible.has(id));
      if (missing.length > 0) throw new ConnectError(`no server ${missing.join(", ")}; see ServerService.ListServers`, Code.NotFound);
      // One createCommands per instance name: each seals its payloads and notifies the agents.
      const byInstance = new Map<string, string[]>();
      for (const t of req.targets) byInstance.set(t.instance, [...(byInstance.get(t.instance) ?? []), t.serverId]);
      const created = [];
      for (const [instance, ids] of byInstance) {
        created.push(
          ...(await createCommands(trx, deps.crypto, {
            serverIds: ids,
            instance,
            kind,
            payload,
            createdBy: principal.name,
            ttlSeconds: req.ttlSeconds || undefined,
          })),
        );
      }
      writeDb(ctx, db, ...created.map((c) => `command:${c.id}`));
      const rows: CommandRow[] = await selectCommandsInScope(
        trx,
        principal.scope,
        created.map((c) => c.id),
      );
      const order = new Map(created.map((c, i) => [c.id, i]));
      return { commands: rows.sort((a, b) => order.get(a.id)! - order.get(b.id)!).map(commandMessage) };
    },

    async listCommands(req, ctx) {
      const principal = principalOf(ctx);
      const size = req.pageSize || 50;
      const rows: CommandRow[] = await selectCommandPage(
        db,
        principal.scope,
        {
          serverId: req.serverId || undefined,
          statuses: req.statuses.map((s) => statusNames.get(s)!),
          kind: req.kind ? kindNames.get(req.kind) : undefined,
        },
        size + 1,
        decodeCursor(req.pageToken),
      );
      const page = rows.slice(0, size);
      return { commands: page.map(commandMessage), nextPageToken: rows.length > size ? encodeCursor(page.at(-1)!) : "" };
    },

    async getCommand(req, ctx) {
      const [row] = (await selectCommandsInScope(db, principalOf(ctx).scope, [req.commandId])) as CommandRow[];
      if (!row) throw new ConnectError(`no command ${req.commandId}`, Code.NotFound);
      return { command: commandMessage(row) };
    },

    async *watchCommands(req, ctx) {
      const principal = principalOf(ctx);
      const seen = new Map<string, string>();
      for (;;) {
        const rows: CommandRow[] = await selectCommandsInScope(db, principal.scope, req.commandIds);
        if (seen.size === 0 && rows.length < req.commandIds.length) {
          const found = new Set(rows.map((r) => r.id));
          throw new ConnectError(`no command ${req.commandIds.filter((id) => !found.has(id)).join(", ")}`, Code.NotFound);
        }
        const changed = rows.filter((r) => seen.get(r.id) !== r.status);
        for (const r of changed) seen.set(r.id, r.status);
        const done = rows.every((r) => finalStatuses.includes(r.status));
        if (changed.length > 0 || done) yield { commands: changed.map(commandMessage), done };
        if (done) return;
        await sleep(watchIntervalMs, undefined, { signal: ctx.signal });
      }
    },
  };
}
