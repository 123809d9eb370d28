import type { DatabaseOutage } from "../database-outage.js";
import { toConnectError } from "../errors.js";
import { Code, ConnectError, createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { bodyDigestKey } from "../connect-adapter.js";
import { peerAddressKey, requestIdKey } from "../context-keys.js";
import { requestIdFrom, requestIdHeader } from "../request-context.js";
import {
  HmacError,
  checkBeforeBody,
  checkSignatureAndNonce,
  claimedSignature,
  type ClaimedSignature,
  type HmacRefusal,
  type HmacVerifierDeps,
  type KnownCaller,
} from "./verify.js";

/** The authenticated caller of a signed request; set before any handler runs. */
export const callerKey = createContextKey<KnownCaller | undefined>(undefined, { description: "authenticated caller" });

const pendingKey = createContextKey<{ claimed: ClaimedSignature; caller: KnownCaller } | undefined>(undefined, {
  description: "caller awaiting signature check",
});

/** One refusal, for logs and the audit trail; never the signature or a secret. */
export interface HmacRefusalEvent {
  reason: HmacRefusal;
  callerId?: string;
  procedure: string;
  requestId: string;
  peer: string;
}

export interface HmacAuthOptions {
  verifier: HmacVerifierDeps;
  /** Type names of the services whose every method requires a signature. */
  protectedServices: ReadonlySet<string>;
  log: Logger;
  /** Called for each refusal (the audit table, metrics). */
  onRefusal?: (event: HmacRefusalEvent) => void | Promise<void>;
  /**
   * Which requests of the protected services must be signed; default all. Those it answers false
   * for are left to another authenticator (the operator API: a session cookie instead).
   */
  applies?: (header: Headers) => boolean;
  /** Logs an unreachable database once per outage (instead of a line per request it stops). */
  databaseOutage?: Pick<DatabaseOutage, "notice">;
}

/** The public message of every refusal: short, the same for all reasons. */
export const refusalMessage = "request signature rejected";

/**
 * HMAC authentication in two steps, both before any handler and before request validation:
 * `requestGate` checks headers, caller and clock before the body is read (a refused request costs
 * no body read); `interceptor` — first in the chain — checks the signature over the body's hash
 * and records the nonce, then puts the caller into the context.
 */
export function createHmacAuth(options: HmacAuthOptions) {
  const refuse = async (ctx: { requestHeader: Headers; values: HandlerContext["values"] }, procedure: string, err: unknown, callerId?: string) => {
    if (!(err instanceof HmacError)) {
      // Not a refusal: the check itself failed (e.g. the database is down). Unavailable when it is.
      const translated = toConnectError(err);
      if (options.databaseOutage?.notice(err)) options.log.debug({ procedure }, "a signed request could not be checked: the database cannot be reached");
      // Its caller went away before the body arrived; the call's own line says so.
      else if (translated.code === Code.Canceled) options.log.debug({ procedure }, "a signed request was given up by its caller before it could be checked");
      else options.log.error({ err, procedure, code: Code[translated.code] }, "a signed request could not be checked");
      return translated;
    }
    const event: HmacRefusalEvent = {
      reason: err.reason,
      callerId,
      procedure,
      requestId: ctx.values.get(requestIdKey) || requestIdFrom(ctx.requestHeader.get(requestIdHeader)),
      peer: ctx.values.get(peerAddressKey),
    };
    options.log.warn(event, "signed request refused");
    await options.onRefusal?.(event);
    const refusal = new ConnectError(refusalMessage, Code.Unauthenticated);
    refusal.metadata.set(requestIdHeader, event.requestId);
    return refusal;
  };

  const applies = options.applies ?? (() => true);
  const requestGate = async (ctx: HandlerContext) => {
    if (!options.protectedServices.has(ctx.service.typeName) || !applies(ctx.requestHeader)) return;
    const procedure = `/${ctx.service.typeName}/${ctx.method.name}`;
    let claimed: ClaimedSignature | undefined;
    try {
      // A GET carries its message in the URL, outside the signed body.
      if (ctx.requestMethod !== "POST") throw new HmacError("malformed");
      // The signature covers the path and the body, not a query string: a signed request has none.
      if (new URL(ctx.url, "https://x").search !== "") throw new HmacError("query_string");
      claimed = claimedSignature((name) => ctx.requestHeader.get(name));
      const caller = await checkBeforeBody(options.verifier, claimed);
      ctx.values.set(pendingKey, { claimed, caller });
    } catch (err) {
      throw await refuse(ctx, procedure, err, claimed?.callerId);
    }
  };

  const interceptor: Interceptor = (next) => async (req) => {
    if (!options.protectedServices.has(req.service.typeName) || !applies(req.header)) return next(req);
    const procedure = `/${req.service.typeName}/${req.method.name}`;
    const ctx = { requestHeader: req.header, values: req.contextValues };
    const pending = req.contextValues.get(pendingKey);
    try {
      // No gate ran: the call did not come through a signed-request server (e.g. in memory).
      if (!pending) throw new HmacError("malformed");
      let message = req.message;
      if (req.stream) {
        // Read the (single) request message so the body, and so its digest, is complete.
        const messages = [];
        for await (const m of req.message) messages.push(m);
        message = (async function* () {
          yield* messages;
        })() as typeof req.message;
      }
      const digest = req.contextValues.get(bodyDigestKey)?.sha256;
      if (digest === undefined) throw new HmacError("malformed");
      await checkSignatureAndNonce(options.verifier, pending.caller, pending.claimed, procedure, digest);
      req.contextValues.set(callerKey, pending.caller);
      return next(req.stream ? ({ ...req, message } as typeof req) : req);
    } catch (err) {
      throw await refuse(ctx, procedure, err, pending?.claimed.callerId);
    }
  };

  return { requestGate, interceptor };
}
