import { createHash } from "node:crypto";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createConnectRouter, createContextKey, type ConnectRouter, type ContextValues, type HandlerContext } from "@connectrpc/connect";
import type { ConnectRouterOptions } from "@connectrpc/connect";
import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { constants as http2Constants, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { Logger } from "pino";
import { createAdmission, type QueueLimit, type RefusalSpell } from "./admission.js";
import { bodyTimeoutMessage, malformedBodyMessage, parseBinaryPrefix, shuttingDownMessage } from "./errors.js";
import { serveHeldStream, servesHeldStream, type HeldStream } from "./held-stream.js";

/** The SHA-256 of a request body, filled in once the body has been read to its end. */
export interface BodyDigest {
  /** Lowercase hex; undefined until the last byte was read. */
  sha256?: string;
  bytes: number;
}

/** Where handlers and interceptors find the digest of the exact bytes that arrived. */
export const bodyDigestKey = createContextKey<BodyDigest | undefined>(undefined, { description: "request body digest" });

export interface AdapterOptions extends Partial<ConnectRouterOptions> {
  routes: (router: ConnectRouter) => void;
  contextValues: (req: Http2ServerRequest) => ContextValues;
  /** Largest whole request body read (a streaming request may hold several messages). */
  readMaxBytes: number;
  /** How long the request body may take to arrive; then 408 and the stream is closed. */
  bodyReadTimeoutMs: number;
  /** Admission control (ServerOptions.maxPendingCalls); unset: no limit. */
  maxPendingCalls?: number;
  /** When the backlog counts as too old (default `defaultQueueLimit`). */
  queueLimit?: QueueLimit;
  /** Told of every call refused by admission control (a metric). */
  onRefused?: () => void;
  /** Told of spells of refusing (their start, every 5 s while they go on, their end); times are `performance.now()`. */
  onSpell?: (spell: RefusalSpell) => void;
  /**
   * Server-streaming methods every agent holds open: served on a lean path (held-stream.ts) when
   * the call uses the Connect protocol with binary messages, by connect otherwise.
   */
  heldStreams?: readonly DescMethod[];
  /** Methods that bound their own queue: admission control neither refuses nor counts them. */
  ownQueues?: readonly DescMethod[];
  log: Logger;
}

/** Set on a call that admission control refuses; the request gate answers it. */
const refusedKey = createContextKey<ConnectError | undefined>(undefined, { description: "refused by admission control" });

/**
 * connect-node's adapter with one addition: the request body is hashed as it streams in, so
 * signature checks (DESIGN.md §3.1) cover the exact bytes sent, whatever the protocol, codec or
 * compression. Nothing is buffered; the digest is complete when the router has read the body.
 */
export function createConnectAdapter(options: AdapterOptions) {
  const admission = createAdmission(options);
  // Refused before anything else looks at the call: no signature check, no body read.
  const requestGate = (ctx: HandlerContext) => {
    const refusal = ctx.values.get(refusedKey);
    if (refusal) throw refusal;
    return options.requestGate?.(ctx);
  };
  const router = createConnectRouter({ acceptCompression: [compressionGzip, compressionBrotli], ...options, requestGate });
  const held = heldStreamsOf(router, options.routes, options.heldStreams ?? []);
  const heldOptions = { interceptors: options.interceptors ?? [], requestGate, maxTimeoutMs: options.maxTimeoutMs ?? 0 };
  const handlers = new Map(router.handlers.map((h) => [h.requestPath, h]));
  const ownQueues = new Set((options.ownQueues ?? []).map(requestPathOf));
  let heldCalls = 0;
  // Each call's signal, so a shutdown can abort every open call. Not one shared shutdown signal:
  // every call would add a listener to it, and with a thousand open streams each new call pays
  // for walking a thousand listeners (EventTarget checks for duplicates) when it adds and removes its own.
  const open = new Set<AbortController>();
  let shutdownReason: unknown;
  const handle = (req: Http2ServerRequest, res: Http2ServerResponse): boolean => {
    const handler = handlers.get((req.url ?? "").split("?", 2)[0] ?? "");
    if (!handler) return false;
    const values = options.contextValues(req);
    const admitted = ownQueues.has(handler.requestPath) ? { ticket: undefined } : admission.admit();
    const ticket = "ticket" in admitted ? admitted.ticket : undefined;
    if ("refusal" in admitted) values.set(refusedKey, admitted.refusal);
    const digest: BodyDigest = { bytes: 0 };
    values.set(bodyDigestKey, digest);
    const uReq = universalRequestFromNodeRequest(req, res, undefined, values);
    const call = new AbortController();
    const requestSignal = uReq.signal;
    if (shutdownReason !== undefined) call.abort(shutdownReason);
    else if (requestSignal.aborted) call.abort(requestSignal.reason);
    else requestSignal.addEventListener("abort", () => call.abort(requestSignal.reason), { once: true });
    uReq.signal = call.signal;
    open.add(call);
    const done = () => {
      clearTimeout(bodyTimer);
      open.delete(call);
    };
    const body = uReq.body as AsyncIterable<Uint8Array>;
    // A body that trickles in (one byte every few seconds) would hold the call for as long as the
    // client likes: the whole body has to arrive within bodyReadTimeoutMs of the panel starting to
    // read it. Not of the call's start: the request gate may wait its turn first (a database
    // connection, when thousands of agents come back at once), and a body that arrived in time and
    // waited for the panel is not the caller's fault.
    let bodyTimer: NodeJS.Timeout | undefined;
    let bodyTimedOut = false;
    const bodyTooSlow = () => {
      bodyTimedOut = true;
      options.log.warn({ rpc: handler.method.name, peer: req.socket?.remoteAddress, timeoutMs: options.bodyReadTimeoutMs }, "request body too slow: closed");
      call.abort(new ConnectError(bodyTimeoutMessage, Code.DeadlineExceeded));
      if (!res.headersSent) {
        const text = JSON.stringify({ code: "deadline_exceeded", message: `the request body did not arrive within ${options.bodyReadTimeoutMs / 1000} s` });
        res.writeHead(408, { "content-type": "application/json", "cache-control": "no-store" });
        res.end(text);
      }
      // HTTP/2: end the stream (its body will not be read); HTTP/1.1: the connection.
      if (req.stream) req.stream.close(http2Constants.NGHTTP2_CANCEL);
      else req.socket?.destroy();
    };
    uReq.body = (async function* () {
      bodyTimer = setTimeout(bodyTooSlow, options.bodyReadTimeoutMs);
      bodyTimer.unref();
      const hash = createHash("sha256");
      for await (const chunk of body) {
        digest.bytes += chunk.byteLength;
        if (digest.bytes > options.readMaxBytes) {
          throw new ConnectError(`request body exceeds ${options.readMaxBytes} bytes`, Code.ResourceExhausted);
        }
        hash.update(chunk);
        yield chunk;
      }
      clearTimeout(bodyTimer);
      // A stream this side closed (the timeout above, a shutdown) reads as a body that simply
      // ended: what arrived is not the body that was sent, and its digest would turn a slow or
      // cut call into a forged one ("bad_signature") or an empty request.
      if (bodyTimedOut) throw new ConnectError(bodyTimeoutMessage, Code.DeadlineExceeded);
      if (call.signal.aborted) throw ConnectError.from(call.signal.reason, Code.Canceled);
      digest.sha256 = hash.digest("hex");
    })();
    const release = () => ticket !== undefined && admission.release(ticket);
    const heldStream = held.get(handler.requestPath);
    if (heldStream && servesHeldStream(uReq)) {
      heldCalls++;
      let released = false;
      const answering = () => {
        if (released) return;
        released = true;
        release();
      };
      serveHeldStream(heldStream, uReq, res, heldOptions, answering)
        .catch((err: unknown) => {
          // It answers every failure itself; this is only for a fault in that answering.
          options.log.error({ err, rpc: handler.method.name }, "serving a held stream failed");
          res.destroy();
        })
        .finally(done);
      res.once("close", done);
      return true;
    }
    // The call stops counting as pending once it starts answering (a unary call: its answer).
    const answering = handler(uReq).finally(release);
    answering
      .then(async (uRes) => universalResponseToNodeResponse(await malformedBodyAsInvalidArgument(uRes), res))
      .catch((reason: unknown) => {
        if (!bodyTimedOut && ConnectError.from(reason).code !== Code.Aborted) {
          options.log.error({ err: reason, rpc: handler.method.name }, "writing the response failed");
        }
      })
      .finally(done);
    // connect-node's universalResponseToNodeResponse waits for an "end" event that an HTTP/2
    // response never emits (it emits "finish" and "close"), so its promise never settles: the
    // call is forgotten when its response closes, or every call would stay in `open` for good
    // (2,541 finished calls held by 1,000 agents after a few minutes, with their streams).
    res.once("close", done);
    return true;
  };
  return {
    /** Serves a request if it is an RPC of these routes; answers whether it was. */
    handle,
    /** Calls taken on and not yet closed (a held stream counts until it ends). */
    openCalls: () => open.size,
    /** Calls served on the held-stream path so far. */
    heldCalls: () => heldCalls,
    /** Aborts every open call and every call that starts from now on (a draining server). */
    shutdown(reason: unknown = new ConnectError(shuttingDownMessage, Code.Unavailable)) {
      shutdownReason = reason;
      for (const call of open) call.abort(reason);
    },
  };
}

/** The HTTP path a method's calls arrive on (what connect's router keys its handlers by). */
const requestPathOf = (method: DescMethod) => `/${method.parent.typeName}/${method.name}`;

/**
 * Mounts the routes on `router` and keeps, of the methods in `methods`, each one's implementation
 * (connect's router keeps only its own handler).
 */
function heldStreamsOf(router: ConnectRouter, routes: (router: ConnectRouter) => void, methods: readonly DescMethod[]): Map<string, HeldStream> {
  const wanted = new Set(methods);
  const held = new Map<string, HeldStream>();
  const keep = (method: DescMethod, impl: unknown, opts: unknown) => {
    if (!wanted.has(method)) return;
    if (method.methodKind !== "server_streaming") throw new Error(`${method.parent.typeName}.${method.name} is not a server-streaming method`);
    // The held path applies the router's options (interceptors, limits); a service's own would be skipped there.
    if (opts !== undefined) throw new Error(`${method.parent.typeName}.${method.name} is held: mount its service without options of its own`);
    if (typeof impl === "function") held.set(requestPathOf(method), { method: method as HeldStream["method"], impl: impl as HeldStream["impl"] });
  };
  const recording: ConnectRouter = {
    get handlers() {
      return router.handlers;
    },
    service(service: DescService, implementation: Record<string, unknown>, opts) {
      router.service(service, implementation as never, opts);
      for (const method of service.methods) {
        const impl = implementation[method.localName];
        keep(method, typeof impl === "function" ? impl.bind(implementation) : impl, opts);
      }
      return recording;
    },
    rpc(method: DescMethod, impl: unknown, opts) {
      router.rpc(method, impl as never, opts);
      keep(method, impl, opts);
      return recording;
    },
  } as ConnectRouter;
  routes(recording);
  for (const method of methods) {
    if (!held.has(requestPathOf(method))) throw new Error(`no implementation of ${method.parent.typeName}.${method.name} to hold streams for`);
  }
  return held;
}

/**
 * A request body that does not parse is the caller's fault, not the server's: connect-es answers
 * it as `internal` (its binary codec's choice; JSON that does not parse is already
 * `invalid_argument`). This turns it into `invalid_argument` for the Connect protocol (a unary
 * error body) and for gRPC (the status trailer), before it is written.
 */
async function malformedBodyAsInvalidArgument(uRes: UniversalServerResponse): Promise<UniversalServerResponse> {
  if (uRes.status === 500 && (uRes.header?.get("content-type") ?? "").startsWith("application/json") && uRes.body !== undefined) {
    // A Connect unary error: one small JSON body, read whole before anything is written.
    const chunks: Uint8Array[] = [];
    for await (const chunk of uRes.body) chunks.push(chunk);
    const original = Buffer.concat(chunks);
    let error: { code?: string; message?: string } = {};
    try {
      error = JSON.parse(original.toString("utf8")) as typeof error;
    } catch {
      // Not a JSON error body (e.g. compressed): left as it is.
    }
    if (error.code === "internal" && error.message?.startsWith(parseBinaryPrefix)) {
      const body = Buffer.from(JSON.stringify({ code: "invalid_argument", message: malformedBodyMessage(error.message.slice(parseBinaryPrefix.length)) }));
      uRes.header?.set("content-length", String(body.byteLength));
      return { ...uRes, status: 400, body: bytesOnce(body) };
    }
    return { ...uRes, body: bytesOnce(original) };
  }
  // gRPC only (gRPC-Web carries its trailers in the body): other responses pass untouched.
  const contentType = uRes.header?.get("content-type") ?? "";
  if (uRes.trailer && uRes.body && contentType.startsWith("application/grpc") && !contentType.startsWith("application/grpc-web")) {
    const body = uRes.body;
    const trailer = uRes.trailer;
    return {
      ...uRes,
      body: (async function* () {
        yield* body;
        // gRPC: the status is in the trailers, written once the body has ended.
        const message = decodeURIComponent(trailer.get("grpc-message") ?? "");
        if (trailer.get("grpc-status") === String(Code.Internal) && message.startsWith(parseBinaryPrefix)) {
          trailer.set("grpc-status", String(Code.InvalidArgument));
          trailer.set("grpc-message", encodeURIComponent(malformedBodyMessage(message.slice(parseBinaryPrefix.length))));
        }
      })(),
    };
  }
  return uRes;
}

async function* bytesOnce(bytes: Uint8Array) {
  yield bytes;
}
