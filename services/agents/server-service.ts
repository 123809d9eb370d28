import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  InstallTokenState,
  ServerStatus,
  type BootstrapSchema,
  type InstallTokenSchema,
  type ServerSchema,
  type ServerService,
} from "../../gen/myosicam/panel/v1/server_pb.js";
import type { Knex } from "../lib/db.js";
import { badPageToken } from "../lib/paging.js";
import { timestampOf } from "../lib/timestamps.js";
import { serverInScope } from "./server-scope.js";
import { isScoped, principalOf, writeDb, type Principal } from "../lib/principal.js";
import { bootstrapCommand, fingerprintOf } from "../lib/tls.js";
import {
  countInstances,
  countServersByStatus,
  deleteServer,
  insertServer,
  selectLatestHostReading,
  selectServerInstances,
  selectServerPage,
  selectServersInScope,
  updateServerTags,
} from "./fleet-store.js";
import { createInstallToken, defaultInstallTokenTtlSeconds, listInstallTokens, type InstallTokenInfo } from "./install-tokens.js";
import { approveServer, revokeInstallToken, revokeServer, selectInstallTokensByPrefix, type ServerRow, type ServerStatus as StatusName } from "./store.js";

const statuses: Record<StatusName, ServerStatus> = {
  new: ServerStatus.NEW,
  pending: ServerStatus.PENDING,
  online: ServerStatus.ONLINE,
  unreachable: ServerStatus.UNREACHABLE,
  revoked: ServerStatus.REVOKED,
};
const statusNames = new Map(Object.entries(statuses).map(([name, value]) => [value, name as StatusName]));

const tokenStates = {
  issued: InstallTokenState.ISSUED,
  expired: InstallTokenState.EXPIRED,
  consumed: InstallTokenState.CONSUMED,
  revoked: InstallTokenState.REVOKED,
} as const;

export function serverMessage(row: ServerRow, instances?: { total: number; running: number }): MessageInitShape<typeof ServerSchema> {
  return {
    id: row.id,
    name: row.name,
    status: statuses[row.status],
    approved: row.approved,
    tags: row.tags ?? [],
    hostname: row.hostname ?? "",
    ip: row.seen_ip ?? "",
    reportedIp: row.reported_ip ?? "",
    os: row.os ?? "",
    osVersion: row.os_version ?? "",
    arch: row.arch ?? "",
    agentVersion: row.agent_version ?? "",
    registeredAt: timestampOf(row.registered_at),
    lastSeenAt: timestampOf(row.last_seen_at),
    unreachableSince: timestampOf(row.unreachable_since),
    uptimeSeconds: BigInt(row.uptime_seconds ?? 0),
    instanceCount: instances?.total ?? 0,
    runningInstanceCount: instances?.running ?? 0,
    createdAt: timestampOf(row.created_at),
  };
}

function tokenMessage(t: InstallTokenInfo): MessageInitShape<typeof InstallTokenSchema> {
  return {
    hashPrefix: t.hashPrefix,
    serverId: t.serverId,
    serverName: t.server,
    state: tokenStates[t.state],
    createdBy: t.createdBy,
    createdAt: timestampOf(t.createdAt),
    expiresAt: timestampOf(t.expiresAt),
    consumedAt: timestampOf(t.consumedAt),
  };
}

/** A page token: the last name of the page, opaque to callers. */
const encodeCursor = (name: string) => Buffer.from(name, "utf8").toString("base64url");
function decodeCursor(token: string): string | undefined {
  if (token === "") return undefined;
  const name = Buffer.from(token, "base64url").toString("utf8");
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(name)) throw badPageToken();
  return name;
}

export interface ServerServiceDeps {
  db: Knex;
  /** Where agents reach the panel, for bootstrap commands. */
  panelUrl(): string;
  /** The panel's certificate (PEM): its fingerprint and key pin go into bootstrap commands. */
  certificate: string;
}

/** Handlers of `myosicam.panel.v1.ServerService`; every id outside the caller's scope is NotFound. */
export function createServerService(deps: ServerServiceDeps): ServiceImpl<typeof ServerService> {
  const { db } = deps;
  const notFound = (id: string) => new ConnectError(`no server ${id}; see ServerService.ListServers (\`npx myosicam agent list\`)`, Code.NotFound);
  const inScope = (principal: Principal, id: string, trx: Knex = db) => serverInScope(trx, principal.scope, id);
  const bootstrap = async (trx: Knex, server: string, ttlSeconds: number, createdBy: string): Promise<MessageInitShape<typeof BootstrapSchema>> => {
    const { token, info } = await createInstallToken(trx, { server, ttlSeconds: ttlSeconds || defaultInstallTokenTtlSeconds, createdBy });
    const panelUrl = deps.panelUrl();
    return {
      installToken: token,
      tokenHashPrefix: info.hashPrefix,
      expiresAt: timestampOf(info.expiresAt),
      panelUrl,
      panelFingerprint: fingerprintOf(deps.certificate, "PANEL_TLS_CERT"),
      command: bootstrapCommand(token, panelUrl, deps.certificate),
    };
  };
  /** Per-server results of a bulk change: ids outside the scope fail as "no such server". */
  const bulk = async (ctx: HandlerContext, ids: readonly string[], change: (trx: Knex, row: ServerRow) => Promise<ServerRow | string>) => {
    const principal = principalOf(ctx);
    const trx = writeDb(ctx, db);
    const found = new Map((await selectServersInScope(trx, principal.scope, ids)).map((r) => [r.id, r]));
    const results = [];
    for (const id of ids) {
      const row = found.get(id);
      if (!row) {
        results.push({ serverId: id, ok: false, error: `no server ${id}` });
        continue;
      }
      const outcome = await change(trx, row);
      if (typeof outcome === "string") results.push({ serverId: id, ok: false, error: outcome, server: serverMessage(row) });
      else {
        writeDb(ctx, db, `server:${id}`);
        results.push({ serverId: id, ok: true, server: serverMessage(outcome) });
      }
    }
    return results;
  };

  return {
    async listServers(req, ctx) {
      const principal = principalOf(ctx);
      const size = req.pageSize || 50;
      const filter = {
        statuses: (req.filter?.statuses ?? []).map((s) => statusNames.get(s)!),
        tags: req.filter?.tags,
        query: req.filter?.query.trim(),
        name: req.filter?.name,
      };
      const { rows, total } = await selectServerPage(db, principal.scope, filter, size + 1, decodeCursor(req.pageToken));
      const page = rows.slice(0, size);
      const counts = await countInstances(
        db,
        page.map((r) => r.id),
      );
      return {
        servers: page.map((r) => serverMessage(r, counts.get(r.id))),
        nextPageToken: rows.length > size ? encodeCursor(page.at(-1)!.name) : "",
        total,
      };
    },

    async countServers(req, ctx) {
      return countServersByStatus(db, principalOf(ctx).scope, req.tags);
    },

    async getServer(req, ctx) {
      const row = await inScope(principalOf(ctx), req.serverId);
      const [instances, reading] = await Promise.all([selectServerInstances(db, row.id), selectLatestHostReading(db, row.id)]);
      return {
        server: serverMessage(row, { total: instances.length, running: instances.filter((i) => i.running).length }),
        instances: instances.map((i) => ({
          id: i.id,
          name: i.name,
          version: i.version,
          running: i.running,
          pid: i.pid ?? 0,
          uptimeSeconds: BigInt(i.uptime_seconds ?? 0),
          readerCount: i.reader_count,
          problems: i.problems,
          syncedAt: timestampOf(i.synced_at),
        })),
        latestHostReading: reading && {
          at: timestampOf(reading.at),
          cpuPercent: reading.cpu_percent,
          memoryUsedMb: reading.memory_used_mb,
          memoryTotalMb: reading.memory_total_mb,
          diskUsedMb: reading.disk_used_mb,
          loadAverage: reading.load_average,
        },
      };
    },

    async addServer(req, ctx) {
      const principal = principalOf(ctx);
      // A scoped caller may add a server only inside its scope: tagged with one of its tags.
      if (isScoped(principal.scope) && !req.tags.some((t) => principal.scope.tags.includes(t))) {
        throw new ConnectError(
          principal.scope.tags.length > 0
            ? `your access is limited to servers tagged ${principal.scope.tags.join(", ")}: give the new server one of those tags`
            : "your access is limited to some servers; a new server would be outside it",
          Code.PermissionDenied,
        );
      }
      const id = randomUUID();
      const trx = writeDb(ctx, db, `server:${id}`);
      const row = await insertServer(trx, { id, name: req.name, tags: req.tags, createdBy: principal.name });
      if (!row) throw new ConnectError(`a server named ${req.name} exists already; re-run its bootstrap instead`, Code.AlreadyExists);
      return { server: serverMessage(row), bootstrap: await bootstrap(trx, row.name, req.tokenTtlSeconds, principal.name) };
    },

    async rerunBootstrap(req, ctx) {
      const principal = principalOf(ctx);
      const trx = writeDb(ctx, db, `server:${req.serverId}`);
      const row = await inScope(principal, req.serverId, trx);
      return { bootstrap: await bootstrap(trx, row.name, req.tokenTtlSeconds, principal.name) };
    },

    async listInstallTokens(req, ctx) {
      const principal = principalOf(ctx);
      const tokens = await listInstallTokens(db);
      const visible = new Set((await selectServersInScope(db, principal.scope, [...new Set(tokens.map((t) => t.serverId))])).map((s) => s.id));
      return { tokens: tokens.filter((t) => visible.has(t.serverId) && (!req.serverId || t.serverId === req.serverId)).map(tokenMessage) };
    },

    async revokeInstallToken(req, ctx) {
      const principal = principalOf(ctx);
      const trx = writeDb(ctx, db);
      const matches = await selectInstallTokensByPrefix(trx, req.hashPrefix);
      const visible = new Set(
        (
          await selectServersInScope(
            trx,
            principal.scope,
            matches.map((m) => m.server_id),
          )
        ).map((s) => s.id),
      );
      const mine = matches.filter((m) => visible.has(m.server_id));
      if (mine.length === 0)
        throw new ConnectError(`no install token ${req.hashPrefix}; see ServerService.ListInstallTokens (\`npx myosicam token list\`)`, Code.NotFound);
      if (mine.length > 1) throw new ConnectError(`${req.hashPrefix} matches ${mine.length} tokens; give more characters`, Code.InvalidArgument);
      const token = mine[0]!;
      writeDb(ctx, db, `install_token:${token.token_hash.slice(0, 8)}`, `server:${token.server_id}`);
      if (!(await revokeInstallToken(trx, token.token_hash))) {
        throw new ConnectError(`install token ${req.hashPrefix} is already ${token.state}`, Code.FailedPrecondition);
      }
      return {
        token: tokenMessage({
          hashPrefix: token.token_hash.slice(0, 8),
          server: token.server_name,
          serverId: token.server_id,
          state: "revoked",
          createdBy: token.created_by,
          createdAt: token.created_at,
          expiresAt: token.expires_at,
          consumedAt: token.consumed_at,
        }),
      };
    },

    async setServerTags(req, ctx) {
      const principal = principalOf(ctx);
      const trx = writeDb(ctx, db);
      const found = await selectServersInScope(trx, principal.scope, req.serverIds);
      const missing = req.serverIds.filter((id) => !found.some((r) => r.id === id));
      if (missing.length > 0) throw notFound(missing.join(", "));
      const overlap = req.add.filter((t) => req.remove.includes(t));
      if (overlap.length > 0) throw new ConnectError(`tag ${overlap.join(", ")} is both added and removed`, Code.InvalidArgument);
      writeDb(ctx, db, ...req.serverIds.map((id) => `server:${id}`));
      const rows = await updateServerTags(trx, req.serverIds, req.add, req.remove);
      return { servers: rows.map((r) => serverMessage(r)) };
    },

    async approveServers(req, ctx) {
      const results = await bulk(ctx, req.serverIds, async (trx, row) => {
        if (row.status === "revoked") return "the server is revoked; re-run its bootstrap to enroll it again";
        return (await approveServer(trx, row.id)) ?? "the server is revoked";
      });
      return { results };
    },

    async revokeServers(req, ctx) {
      const results = await bulk(ctx, req.serverIds, async (trx, row) => (await revokeServer(trx, row.id)) ?? "the server is gone");
      return { results };
    },

    async removeServer(req, ctx) {
      const principal = principalOf(ctx);
      const trx = writeDb(ctx, db, `server:${req.serverId}`);
      const row = await inScope(principal, req.serverId, trx);
      await deleteServer(trx, row.id);
      return {};
    },
  };
}
