import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { ApiClientService } from "../../gen/myosicam/panel/v1/api_client_pb.js";
import type { Knex } from "../lib/db.js";
import { isScoped, principalOf, roleAtLeast, writeDb, type Principal, type ServerScope } from "../lib/principal.js";
import type { ApiClients } from "./api-clients.js";
import { apiClientMessage, roleName, scopeFrom } from "./messages.js";
import type { ApiClientRow } from "./store.js";

/**
 * Whether a caller manages every API client: an unscoped admin or owner. Everyone else (what
 * `myosicam login` does for any operator) creates and manages only clients acting for themselves.
 */
const managesAll = (p: Principal) => roleAtLeast(p.role, "admin") && !isScoped(p.scope);

/** A client's scope must lie within a scoped creator's own; empty means "the same as mine". */
function scopeWithin(requested: ServerScope, own: ServerScope): ServerScope {
  if (!isScoped(own)) return requested;
  if (!isScoped(requested)) return own;
  const outside = [...requested.serverIds.filter((id) => !own.serverIds.includes(id)), ...requested.tags.filter((t) => !own.tags.includes(t))];
  if (outside.length > 0) throw new ConnectError(`scope: ${outside.join(", ")} is outside your own access`, Code.PermissionDenied);
  return requested;
}

/** Handlers of `myosicam.panel.v1.ApiClientService`. */
export function createApiClientService(deps: { db: Knex; clients: ApiClients }): ServiceImpl<typeof ApiClientService> {
  const { db, clients } = deps;
  /** The client, if the caller may manage it: else NotFound (ids of others' clients do not leak). */
  const manageable = async (ctx: HandlerContext, id: string): Promise<ApiClientRow> => {
    const principal = principalOf(ctx);
    const row = await clients.get(id).catch(() => undefined);
    if (!row || (!managesAll(principal) && row.owner_id !== principal.id)) {
      throw new ConnectError(`no API client ${id}; see ApiClientService.ListApiClients (\`npx myosicam apiclient list\`)`, Code.NotFound);
    }
    if (!roleAtLeast(principal.role, row.role)) {
      throw new ConnectError(`this client has the ${row.role} role, above your own (${principal.role})`, Code.PermissionDenied);
    }
    return row;
  };
  return {
    async createApiClient(req, ctx) {
      const actor = principalOf(ctx);
      const role = roleName(req.role);
      if (!roleAtLeast(actor.role, role))
        throw new ConnectError(`you cannot grant the ${role} role: it is above your own (${actor.role})`, Code.PermissionDenied);
      const { row, secret } = await clients.create(writeDb(ctx, db), {
        name: req.name,
        description: req.description,
        role,
        scope: scopeWithin(scopeFrom(req.scope), actor.scope),
        // Acts for its creator: revoked with them, capped at their role.
        ownerId: actor.id,
        createdBy: actor.name,
      });
      writeDb(ctx, db, `api_client:${row.id}`);
      return { client: apiClientMessage(row), secret };
    },

    async listApiClients(_req, ctx) {
      const principal = principalOf(ctx);
      return { clients: (await clients.list(managesAll(principal) ? undefined : principal.id)).map(apiClientMessage) };
    },

    async rotateApiClientSecret(req, ctx) {
      await manageable(ctx, req.clientId);
      const { row, secret } = await clients.rotate(writeDb(ctx, db, `api_client:${req.clientId}`), req.clientId, req.overlapSeconds);
      return { client: apiClientMessage(row), secret };
    },

    async revokeApiClient(req, ctx) {
      await manageable(ctx, req.clientId);
      return { client: apiClientMessage(await clients.revoke(writeDb(ctx, db, `api_client:${req.clientId}`), req.clientId)) };
    },
  };
}
