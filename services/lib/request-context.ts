import { randomUUID } from "node:crypto";
import { Code, type ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import type { Logger } from "pino";
import { peerAddressKey, requestIdKey, requestLoggerKey } from "./context-keys.js";
import type { DatabaseOutage } from "./database-outage.js";
import { loggableError } from "./db.js";
import { bodyTimeoutMessage, isCallerError, shuttingDownMessage, toConnectError } from "./errors.js";

/** What connect-es says when the deadline a caller sent runs out. */
const callerDeadlineMessage = "the operation timed out";

/** Header carrying the correlation id, in and out. */
export const requestIdHeader = "x-request-id";

const wellFormedRequestId = /^[A-Za-z0-9._:-]{1,128}$/;

/** The caller's request id when it is safe to log, else a fresh UUID. */
export function requestIdFrom(header: string | null): string {
  return header !== null && wellFormedRequestId.test(header) ? header : randomUUID();
}

/** Told of every call's end (and of streams opening and closing): the server's metrics. */
export interface CallObserver {
  finished(call: { service: string; method: string; code: string; seconds: number }): void;
  streamOpened(call: { service: string; method: string }): void;
  streamClosed(call: { service: string; method: string }): void;
}

/**
 * The outermost interceptor of every server: binds the request id and a child logger
 * `{svc, rpc, requestId}` into the context, echoes the id in `X-Request-Id`, logs one line per
 * call with its code and duration, and turns unexpected errors into "internal error" (the cause
 * goes to the log only). `serviceNames` maps a proto service's type name to the `svc` field.
 * Successful calls of `routine` services (type names) are logged at debug: 20,000 agents
 * heartbeat 333 times a second, past journald's default limit (10,000 lines per 30 s per unit),
 * which would then drop the lines that matter; their counts and latencies are in `/metrics`.
 */
export function createRequestContextInterceptor(
  root: Logger,
  serviceNames: ReadonlyMap<string, string>,
  observer?: CallObserver,
  databaseOutage?: Pick<DatabaseOutage, "notice">,
  routine: ReadonlySet<string> = new Set(),
): Interceptor {
  return (next) => async (req) => {
    const requestId = requestIdFrom(req.header.get(requestIdHeader));
    const svc = serviceNames.get(req.service.typeName) ?? req.service.typeName;
    const log = root.child({ svc, rpc: req.method.name, requestId });
    req.contextValues.set(requestIdKey, requestId);
    req.contextValues.set(requestLoggerKey, log);
    const peer = req.contextValues.get(peerAddressKey);
    const started = process.hrtime.bigint();
    const call = { service: req.service.typeName, method: req.method.name };
    const finish = (err?: unknown): ConnectError | undefined => {
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      if (err === undefined) {
        observer?.finished({ ...call, code: "ok", seconds: durationMs / 1000 });
        if (routine.has(req.service.typeName)) log.debug({ code: "ok", durationMs, peer }, "rpc finished");
        else log.info({ code: "ok", durationMs, peer }, "rpc finished");
        return undefined;
      }
      const connectErr = toConnectError(err);
      observer?.finished({ ...call, code: Code[connectErr.code] ?? "unknown", seconds: durationMs / 1000 });
      const fields = { code: Code[connectErr.code], durationMs, peer, reason: connectErr.rawMessage };
      // A caller that went away (a closed browser tab ends its live stream so) is no refusal.
      if (connectErr.code === Code.Canceled) log.info(fields, "rpc cancelled by the caller");
      // An unreachable database is logged once per outage (database-outage.ts), not per call.
      else if (connectErr.code === Code.Unavailable && databaseOutage?.notice(connectErr)) log.debug(fields, "rpc refused: the database cannot be reached");
      // The deadline the caller sent (Connect-Timeout-Ms, grpc-timeout) ran out: its choice, not a fault here.
      else if (connectErr.code === Code.DeadlineExceeded && connectErr.rawMessage === callerDeadlineMessage)
        log.info(fields, "rpc ended at the caller's deadline");
      // A stop ends the streams agents hold (they reconnect to another replica or the restarted one).
      else if (connectErr.code === Code.Unavailable && connectErr.rawMessage === shuttingDownMessage) log.info(fields, "rpc ended: the server is stopping");
      // The listener already said so (with the peer and the limit); the caller or its network is slow.
      else if (connectErr.code === Code.DeadlineExceeded && connectErr.rawMessage === bodyTimeoutMessage)
        log.warn(fields, "rpc refused: its body did not arrive in time");
      // Work the panel turns away for now (too much of its kind under way), told when to come back.
      else if (connectErr.code === Code.Unavailable && connectErr.metadata.has("retry-after")) log.info(fields, "rpc turned away for now: busy");
      else if (isCallerError(connectErr.code)) log.warn(fields, "rpc refused");
      // A deadlock or a serialization failure: the caller is told to try again.
      else if (connectErr.code === Code.Aborted)
        log.warn({ ...fields, err: loggableError(connectErr.cause ?? connectErr) }, "rpc aborted by a conflicting change");
      else log.error({ ...fields, err: loggableError(connectErr.cause ?? connectErr) }, "rpc failed");
      connectErr.metadata.set(requestIdHeader, requestId);
      return connectErr;
    };
    try {
      const res = await next(req);
      res.header.set(requestIdHeader, requestId);
      if (!res.stream) {
        finish();
        return res;
      }
      observer?.streamOpened(call);
      return { ...res, message: observeStream(res, finish, () => observer?.streamClosed(call)) } as typeof res;
    } catch (err) {
      throw finish(err);
    }
  };
}

async function* observeStream<T>(res: StreamResponse, finish: (err?: unknown) => ConnectError | undefined, closed: () => void) {
  try {
    for await (const message of res.message as AsyncIterable<T>) yield message;
    finish();
  } catch (err) {
    throw finish(err);
  } finally {
    closed();
  }
}
