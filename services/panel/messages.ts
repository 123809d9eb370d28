import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ApiClientSchema } from "../../gen/myosicam/panel/v1/api_client_pb.js";
import type { AuditEventSchema } from "../../gen/myosicam/panel/v1/audit_pb.js";
import type { WhoAmIResponseSchema } from "../../gen/myosicam/panel/v1/auth_pb.js";
import { PrincipalKind, Role, type ServerScope as ServerScopeMessage } from "../../gen/myosicam/panel/v1/common_pb.js";
import type { OperatorSchema } from "../../gen/myosicam/panel/v1/operator_pb.js";
import type { Principal, RoleName, ServerScope } from "../lib/principal.js";
import { timestampOf } from "../lib/timestamps.js";
import type { AuditRow } from "./audit-log.js";
import { scopeOf, type ApiClientRow, type OperatorRow } from "./store.js";

const roles: Record<RoleName, Role> = { viewer: Role.VIEWER, operator: Role.OPERATOR, admin: Role.ADMIN, owner: Role.OWNER };

export const roleMessage = (role: RoleName): Role => roles[role];

/** A role from a request (validation already refused ROLE_UNSPECIFIED). */
export function roleName(role: Role): RoleName {
  const name = (Object.keys(roles) as RoleName[]).find((n) => roles[n] === role);
  if (!name) throw new ConnectError("role: choose viewer, operator, admin or owner", Code.InvalidArgument);
  return name;
}

export const scopeMessage = (scope: ServerScope) => ({ serverIds: [...scope.serverIds], tags: [...scope.tags] });

export const scopeFrom = (scope: ServerScopeMessage | undefined): ServerScope => ({ serverIds: scope?.serverIds ?? [], tags: scope?.tags ?? [] });

export function principalMessage(p: Principal): MessageInitShape<typeof WhoAmIResponseSchema> {
  return {
    kind: p.kind === "operator" ? PrincipalKind.OPERATOR : PrincipalKind.API_CLIENT,
    id: p.id,
    name: p.name,
    role: roleMessage(p.role),
    scope: scopeMessage(p.scope),
    sessionIdleExpiresAt: timestampOf(p.session?.idleExpiresAt),
    sessionExpiresAt: timestampOf(p.session?.expiresAt),
    mustChangePassword: p.mustChangePassword ?? false,
  };
}

export function operatorMessage(row: OperatorRow): MessageInitShape<typeof OperatorSchema> {
  return {
    id: row.id,
    email: row.email,
    role: roleMessage(row.role),
    scope: scopeMessage(scopeOf(row)),
    disabled: row.disabled_at !== null,
    mustChangePassword: row.temporary_login,
    createdAt: timestampOf(row.created_at),
    lastLoginAt: timestampOf(row.last_login_at),
    createdBy: row.created_by,
  };
}

export function apiClientMessage(row: ApiClientRow): MessageInitShape<typeof ApiClientSchema> {
  const overlapping = row.previous_valid_until && new Date(row.previous_valid_until) > new Date();
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    role: roleMessage(row.role),
    scope: scopeMessage(scopeOf(row)),
    revoked: row.revoked_at !== null,
    createdAt: timestampOf(row.created_at),
    createdBy: row.created_by,
    lastUsedAt: timestampOf(row.last_used_at),
    rotatedAt: timestampOf(row.rotated_at),
    previousSecretValidUntil: overlapping ? timestampOf(row.previous_valid_until) : undefined,
  };
}

const actorKinds: Record<string, PrincipalKind> = { operator: PrincipalKind.OPERATOR, api_client: PrincipalKind.API_CLIENT };

export function auditEventMessage(row: AuditRow): MessageInitShape<typeof AuditEventSchema> {
  return {
    id: BigInt(row.id),
    at: timestampOf(row.at),
    actorKind: actorKinds[row.actor_kind] ?? PrincipalKind.UNSPECIFIED,
    actorId: row.actor_id,
    actorName: row.actor_name,
    action: row.action,
    target: row.target,
    outcome: row.outcome,
    detail: row.detail,
    ip: row.ip,
    requestId: row.request_id,
    hash: row.hash,
  };
}
