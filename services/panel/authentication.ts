import { Code, ConnectError, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { peerAddressKey } from "../lib/context-keys.js";
import { callerKey } from "../lib/hmac/server-auth.js";
import { principalKey } from "../lib/principal.js";
import { requestIdFrom, requestIdHeader } from "../lib/request-context.js";
import type { ApiClientCaller } from "./api-clients.js";
import { internalMethod, isOperatorService, policyOf, unlistedMethod, type Policy } from "./authorization.js";
import { sessionTokenFrom, type Sessions } from "./sessions.js";

/** Requests that say who signs them are API clients; the HMAC checks take them (docs/api.md). */
export const isSignedRequest = (header: Headers): boolean => header.has("x-caller-id");

/**
 * Cross-site request forgery, for calls that authenticate with the session cookie and change
 * something (and Login, which sets the cookie):
 *
 * - `SameSite=Strict` keeps browsers from sending the cookie on any request another site starts;
 * - `Connect-Protocol-Version` is a header an HTML form cannot set, and a cross-origin script can
 *   set it only after a CORS preflight, which this server never approves: a forged request
 *   arrives without it;
 * - `Origin` must name this panel, which also shuts out same-site but cross-origin pages (a
 *   sibling subdomain counts as the same site for SameSite, not for Origin).
 *
 * Together these need no token in the page: nothing a foreign page can make a browser send passes.
 */
export function checkCsrf(ctx: Pick<HandlerContext, "requestHeader" | "url">, allowedOrigins: readonly string[]): void {
  if (ctx.requestHeader.get("connect-protocol-version") !== "1") {
    throw new ConnectError(
      "a call that changes something must use the Connect protocol (header Connect-Protocol-Version: 1), or be signed as an API client",
      Code.PermissionDenied,
    );
  }
  const origin = ctx.requestHeader.get("origin");
  const own = new URL(ctx.url).origin;
  if (origin === null || (origin !== own && !allowedOrigins.includes(origin))) {
    throw new ConnectError(
      `requests from ${origin ?? "a page without an Origin"} may not change anything on this panel (cross-site request refused)`,
      Code.PermissionDenied,
    );
  }
}

/**
 * The operator API's check before the body is read: a request signed as an API client is left
 * to the HMAC checks; any other needs a live session cookie (but Login), and a mutation must pass
 * the CSRF checks. On the whole listener, methods without an access rule and internal ones are
 * refused. Sets the principal.
 */
export function createOperatorGate(deps: { sessions: Sessions; allowedOrigins: readonly string[]; log: Logger }) {
  return async (ctx: HandlerContext) => {
    const procedure = `/${ctx.service.typeName}/${ctx.method.name}`;
    const policy: Policy | undefined = policyOf(procedure);
    // Every call on the panel listener passes here: what the table does not know is refused, and
    // in-process services never answer the network (in-memory transports have no gate).
    if (!policy) throw unlistedMethod(procedure);
    if (policy.access === "internal") throw internalMethod(procedure);
    if (!isOperatorService(ctx.service.typeName)) return;
    if (isSignedRequest(ctx.requestHeader)) return;
    try {
      if (policy.mutation) checkCsrf(ctx, deps.allowedOrigins);
      if (policy.access === "public") return;
      const token = sessionTokenFrom(ctx.requestHeader.get("cookie"));
      const principal = token === undefined ? undefined : await deps.sessions.authenticate(token);
      if (!principal) {
        throw new ConnectError(
          token === undefined
            ? "sign in first (AuthService.Login), or sign the request as an API client (docs/api.md)"
            : "your session has ended (signed out, expired or revoked); sign in again",
          Code.Unauthenticated,
        );
      }
      ctx.values.set(principalKey, principal);
    } catch (err) {
      if (err instanceof ConnectError) {
        const requestId = requestIdFrom(ctx.requestHeader.get(requestIdHeader));
        deps.log.warn({ rpc: ctx.method.name, requestId, peer: ctx.values.get(peerAddressKey), reason: err.rawMessage }, "operator call refused");
        err.metadata.set(requestIdHeader, requestId);
      }
      throw err;
    }
  };
}

/**
 * After the HMAC checks: the API client that signed becomes the request's principal, and its
 * last use is noted (at most once a minute).
 */
export function createApiClientPrincipalInterceptor(touch: (id: string) => Promise<void>): Interceptor {
  return (next) => async (req) => {
    if (!isOperatorService(req.service.typeName)) return next(req);
    const caller = req.contextValues.get(callerKey) as ApiClientCaller | undefined;
    if (caller?.principal) {
      req.contextValues.set(principalKey, caller.principal);
      await touch(caller.id);
    }
    return next(req);
  };
}
