import { Code, ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { Knex } from "./db.js";

/** Operator roles, least first; each includes the ones before it (DESIGN.md §3.7). */
export const roleNames = ["viewer", "operator", "admin", "owner"] as const;
export type RoleName = (typeof roleNames)[number];

/** Whether `role` includes `least`. */
export const roleAtLeast = (role: RoleName, least: RoleName): boolean => roleNames.indexOf(role) >= roleNames.indexOf(least);

/** The servers a principal may see: every server, or those listed by id or carrying a listed tag. */
export interface ServerScope {
  serverIds: readonly string[];
  tags: readonly string[];
}

/** Whether the scope limits anything (an empty scope means every server). */
export const isScoped = (scope: ServerScope): boolean => scope.serverIds.length > 0 || scope.tags.length > 0;

/** Whether a server (its id and tags) is inside `scope`. */
export function scopeIncludes(scope: ServerScope, server: { id: string; tags: readonly string[] }): boolean {
  if (!isScoped(scope)) return true;
  return scope.serverIds.includes(server.id) || server.tags.some((t) => scope.tags.includes(t));
}

/** Who an operator-API request is from: an operator with a session, or a signing API client. */
export interface Principal {
  kind: "operator" | "api_client";
  /** Operator UUID or API client id (`ac_…`). */
  id: string;
  /** E-mail or client name, as the audit log shows it. */
  name: string;
  role: RoleName;
  scope: ServerScope;
  /** Operators only: the session of the request. */
  session?: { id: string; idleExpiresAt: Date; expiresAt: Date };
  /** Operators only: must choose a new password before anything else. */
  mustChangePassword?: boolean;
}

/** The authenticated principal of an operator-API request; set before any handler runs. */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "operator or API client" });

/**
 * A mutation's transaction and what it acted on: the audit interceptor opens the transaction,
 * handlers write through it and name their targets, and the audit row joins the same commit.
 */
export interface Mutation {
  db: Knex.Transaction;
  targets: string[];
}

export const mutationKey = createContextKey<Mutation | undefined>(undefined, { description: "audited mutation" });

/** The principal of a request; Unauthenticated when none was set (the gate did not run). */
export function principalOf(ctx: Pick<HandlerContext, "values">): Principal {
  const principal = ctx.values.get(principalKey);
  if (!principal) throw new ConnectError("sign in first", Code.Unauthenticated);
  return principal;
}

/**
 * Where a handler writes: the audited mutation's transaction when there is one, else `db`. Each
 * `target` names what it acted on (e.g. `server:<id>`) for the audit row.
 */
export function writeDb(ctx: Pick<HandlerContext, "values">, db: Knex, ...targets: string[]): Knex {
  const mutation = ctx.values.get(mutationKey);
  if (!mutation) return db;
  mutation.targets.push(...targets);
  return mutation.db;
}

/** Names what a mutation acted on, for its audit row (when it is audited). */
export function auditTargets(ctx: Pick<HandlerContext, "values">, ...targets: string[]): void {
  ctx.values.get(mutationKey)?.targets.push(...targets);
}
