import type { DescMethod } from "@bufbuild/protobuf";
import { constants, createSecureServer, type Http2SecureServer, type Http2Session, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { createContextValues, type ConnectRouter, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { busySpellOf, type BusySpell, type QueueLimit } from "./admission.js";
import { createConnectAdapter } from "./connect-adapter.js";
import type { Logger } from "pino";
import { peerAddressKey } from "./context-keys.js";
import { isDatabaseUnavailable, shuttingDownMessage } from "./errors.js";
import { admissionRefusals, metricsAuthorized } from "./metrics.js";
import { requestIdFrom, requestIdHeader } from "./request-context.js";
import type { TlsIdentity } from "./tls.js";

/** A plain HTTP endpoint beside the RPCs (e.g. the gated agent download). */
export interface HttpRoute {
  method: "GET";
  /** Requests whose path starts with this are handled here. */
  pathPrefix: string;
  /**
   * Takes only the GET requests under `pathPrefix` that no other route and no RPC took (the
   * console's pages and files, whose paths are the browser's).
   */
  fallback?: boolean;
  handle(req: Http2ServerRequest, res: Http2ServerResponse, requestId: string): void | Promise<void>;
}

/** What `/readyz` reports; `ready` decides between 200 and 503. */
export interface Readiness {
  ready: boolean;
  checks: Record<string, unknown>;
}

export interface ServerOptions {
  /** Name in logs and health answers, e.g. "panel". */
  name: string;
  tls: TlsIdentity;
  routes: (router: ConnectRouter) => void;
  /** Server interceptors, outermost first. */
  interceptors: Interceptor[];
  /** Server-streaming methods that every agent holds open, served on a lean path (held-stream.ts). */
  heldStreams?: readonly DescMethod[];
  /** Methods that bound their own queue: admission control leaves them to it (ServiceModule.ownQueues). */
  ownQueues?: readonly DescMethod[];
  /** Told of spells of refusing calls (ServiceModule.onRefusalSpell): when one starts, every 5 s while it goes on, when it is over. */
  onRefusalSpell?: (spell: BusySpell) => void;
  /** Runs after headers arrive, before the body is read; throw a ConnectError to refuse. */
  requestGate?: (ctx: HandlerContext) => void | Promise<void>;
  readiness: () => Promise<Readiness>;
  /** Plain HTTP endpoints served before the RPC router. */
  httpRoutes?: readonly HttpRoute[];
  /**
   * `GET /metrics` (Prometheus text), only with `Authorization: Bearer <token>`; without a token
   * configured it is not served at all.
   */
  metrics?: { token: string | undefined; scrape(): Promise<{ contentType: string; text: string }> };
  log: Logger;
  readMaxBytes: number;
  maxTimeoutMs: number;
  /** How long a request body may take to arrive (slow-body attacks); then 408 and the stream is closed. */
  bodyReadTimeoutMs: number;
  /** Interval of HTTP/2 PINGs on every session; a session that misses one is destroyed. */
  pingIntervalMs: number;
  /** How long a TLS handshake may take; a connection that has not finished it by then is closed (default Node's 120 s). */
  handshakeTimeoutMs?: number;
  /**
   * Admission control: with this many calls taken on and not yet answering (a unary call until its
   * answer, a stream until it starts answering), or with a backlog older than `queueLimit`, a new
   * call is refused at once with `Unavailable` and `retry-after` instead of queueing until it
   * times out. Unset: no count limit (the backlog rule still applies).
   */
  maxPendingCalls?: number;
  /** When a backlog is too old and new calls are refused (default: 256 calls waiting over 5 s). */
  queueLimit?: QueueLimit;
  /**
   * Connections held at most (from the process's open-file limit: see file-limit.ts); past it new
   * connections are closed at once and the log says which limit to raise. Unset: no limit.
   */
  maxConnections?: number;
}

/** A listening HTTPS server, HTTP/2 and HTTP/1.1 on one port, TLS 1.3 minimum. */
export interface RunningServer {
  readonly url: string;
  readonly port: number;
  /** Stops taking requests and reports not-ready; streams stay open until `close`. */
  markDraining(): void;
  /**
   * Graceful close: aborts handler contexts (streams end with Unavailable), refuses new
   * connections, closes every session; after `deadlineMs` destroys what is left. Idempotent.
   * Answers whether the deadline had to force it.
   */
  close(deadlineMs: number): Promise<{ forced: boolean }>;
}

/** Headers sent on every response, RPC or not. */
export const securityHeaders: Readonly<Record<string, string>> = {
  "strict-transport-security": "max-age=31536000",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-resource-policy": "same-origin",
};

/** Builds the server (no socket yet); `listen` binds it. Building is separate for tests. */
export function createServer(options: ServerOptions) {
  let draining = false;
  const { onRefusalSpell } = options;

  const adapter = createConnectAdapter({
    routes: options.routes,
    interceptors: options.interceptors,
    requestGate: options.requestGate,
    readMaxBytes: options.readMaxBytes,
    maxTimeoutMs: options.maxTimeoutMs,
    bodyReadTimeoutMs: options.bodyReadTimeoutMs,
    maxPendingCalls: options.maxPendingCalls,
    queueLimit: options.queueLimit,
    onRefused: () => admissionRefusals.inc(),
    onSpell: onRefusalSpell && ((spell) => onRefusalSpell(busySpellOf(spell))),
    heldStreams: options.heldStreams,
    ownQueues: options.ownQueues,
    log: options.log,
    contextValues: (req) => createContextValues().set(peerAddressKey, req.socket?.remoteAddress ?? ""),
  });

  // Responses not yet completely written. Once a draining server has none, what still holds a
  // connection open is a client that has not read to the end of a finished response (an agent busy
  // running a command does not read its stream): that need not wait for the deadline.
  let unfinished = 0;
  let onAllFinished: (() => void) | undefined;
  const handler = (req: Http2ServerRequest, res: Http2ServerResponse) => {
    unfinished++;
    let counted = true;
    const finished = () => {
      if (!counted) return;
      counted = false;
      if (--unfinished === 0) onAllFinished?.();
    };
    res.once("finish", finished);
    res.once("close", finished);
    for (const [name, value] of Object.entries(securityHeaders)) res.setHeader(name, value);
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (req.method === "GET" && path === "/healthz") {
      return sendJson(res, 200, { status: "ok", service: options.name });
    }
    if (req.method === "GET" && path === "/readyz") {
      if (draining) return sendJson(res, 503, { status: "shutting_down", service: options.name, checks: {} });
      options.readiness().then(
        (r) => sendJson(res, r.ready ? 200 : 503, { status: r.ready ? "ready" : "not_ready", service: options.name, checks: r.checks }),
        (err) => {
          options.log.error({ err }, "readiness check failed");
          sendJson(res, 503, { status: "not_ready", service: options.name, checks: {} });
        },
      );
      return;
    }
    if (req.method === "GET" && path === "/metrics") return serveMetrics(req, res, options);
    if (draining) {
      res.setHeader(requestIdHeader, requestIdFrom(headerValue(req.headers[requestIdHeader])));
      return sendJson(res, 503, { code: "unavailable", message: shuttingDownMessage });
    }
    const matches = (r: HttpRoute) => r.method === req.method && path.startsWith(r.pathPrefix);
    const serve = (route: HttpRoute) => {
      const requestId = requestIdFrom(headerValue(req.headers[requestIdHeader]));
      res.setHeader(requestIdHeader, requestId);
      Promise.resolve(route.handle(req, res, requestId)).catch((err: unknown) => {
        const unavailable = isDatabaseUnavailable(err);
        options.log.error({ err, requestId, path }, unavailable ? "HTTP endpoint failed: the database is unavailable" : "HTTP endpoint failed");
        if (res.headersSent) res.destroy();
        else if (unavailable) {
          res.setHeader("retry-after", "5");
          sendJson(res, 503, { code: "unavailable", message: "the database is unavailable right now; try again shortly" });
        } else sendJson(res, 500, { code: "internal", message: "internal error" });
      });
    };
    const route = options.httpRoutes?.find((r) => !r.fallback && matches(r));
    if (route) return serve(route);
    if (adapter.handle(req, res)) return;
    const fallback = options.httpRoutes?.find((r) => r.fallback && matches(r));
    if (fallback) return serve(fallback);
    sendJson(res, 404, { code: "not_found", message: `no such endpoint: ${path}` });
  };

  const server: Http2SecureServer = createSecureServer(
    {
      cert: options.tls.cert,
      key: options.tls.key,
      allowHTTP1: true,
      // ALPN chosen by a callback rather than the ALPNProtocols list: with the list, Node copies it
      // into a 3-byte Buffer for every connection, and that copy pins a whole 64 KiB slab of
      // Buffer's pool for as long as the connection lives (≈11 MiB per 1,000 held agents).
      ALPNCallback: chooseApplicationProtocol,
      minVersion: "TLSv1.3",
      ...(options.handshakeTimeoutMs === undefined ? {} : { handshakeTimeout: options.handshakeTimeoutMs }),
      settings: { maxConcurrentStreams: http2Limits.maxConcurrentStreams, maxHeaderListSize: http2Limits.maxHeaderListBytes },
      maxDeflateDynamicTableSize: http2Limits.responseHeaderTableBytes,
      maxHeaderListPairs: http2Limits.maxHeaderPairs,
      maxSessionMemory: http2Limits.maxSessionMemoryMegabytes,
      maxSessionRejectedStreams: http2Limits.maxRejectedStreams,
      maxSessionInvalidFrames: http2Limits.maxInvalidFrames,
    },
    handler,
  );
  const sessions = new Set<Http2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    watchResets(session, options.log);
    const timer = setInterval(() => pingOrDestroy(session, options.pingIntervalMs), options.pingIntervalMs);
    timer.unref();
    session.once("close", () => {
      clearInterval(timer);
      sessions.delete(session);
    });
    session.on("error", (err) => options.log.debug({ err }, "http2 session error"));
  });
  // HTTP/1.1 sockets are tracked too, so that close() can end keep-alive connections.
  const sockets = new Set<TLSSocket>();
  server.on("secureConnection", (socket: TLSSocket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.on("tlsClientError", (err) => options.log.debug({ err: err.message }, "TLS handshake refused"));
  if (options.maxConnections !== undefined) {
    server.maxConnections = options.maxConnections;
    // One line a minute while connections are refused, not one per connection.
    let lastDropLog = Number.NEGATIVE_INFINITY;
    let dropped = 0;
    server.on("drop", () => {
      dropped++;
      if (performance.now() - lastDropLog < 60_000) return;
      lastDropLog = performance.now();
      options.log.error(
        { held: options.maxConnections, dropped },
        "refusing new connections: this listener holds as many as the process's open-file limit allows (RLIMIT_NOFILE); raise it (systemd LimitNOFILE=, or ulimit -n) or add a replica (docs/scaling-out.md)",
      );
      dropped = 0;
    });
  }

  const listen = (port: number, host: string): Promise<RunningServer> =>
    new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        const bound = (server.address() as AddressInfo).port;
        const shownHost = host.includes(":") ? `[${host}]` : host;
        let closing: Promise<{ forced: boolean }> | undefined;
        resolve({
          url: `https://${shownHost}:${bound}`,
          port: bound,
          markDraining: () => {
            draining = true;
          },
          close: (deadlineMs) =>
            (closing ??= closeGracefully({
              server,
              sessions,
              sockets,
              shutdown: () => adapter.shutdown(),
              allFinished: new Promise<void>((resolve) => (unfinished === 0 ? resolve() : (onAllFinished = resolve))),
              deadlineMs,
              markDraining: () => (draining = true),
            })),
        });
      });
    });
  return { listen, server, openCalls: adapter.openCalls, heldCalls: adapter.heldCalls };
}

/**
 * HTTP/2 limits of every server, advertised in SETTINGS or enforced per session. Without them
 * Node advertises unlimited streams and header lists: 10,000 streams on one connection pushed
 * RSS from 213 to 576 MB. Exported for the test that reads them off a live connection.
 */
export const http2Limits = {
  /** Streams one connection may have open at once (an agent uses 2 or 3). */
  maxConcurrentStreams: 128,
  /** Largest header list (SETTINGS_MAX_HEADER_LIST_SIZE), bytes. */
  maxHeaderListBytes: 16 * 1024,
  /**
   * HPACK dynamic table of the headers this server sends: none. Each held connection kept up to
   * 4 KiB for it; responses then carry their headers literally or from the static table, a few
   * hundred bytes more per call (an agent calls about once a minute). The table for what clients
   * send (SETTINGS_HEADER_TABLE_SIZE) stays at the default 4 KiB: advertising less obliges the
   * client's encoder to announce the smaller size first, and HAProxy 2.6's HTTP/2 backend does not
   * (every call through it failed with 502).
   */
  responseHeaderTableBytes: 0,
  maxHeaderPairs: 128,
  /** Memory one session may use for its frames and streams, MB (Node's maxSessionMemory). */
  maxSessionMemoryMegabytes: 8,
  /** Streams refused for going over the limit before the session is closed. */
  maxRejectedStreams: 100,
  maxInvalidFrames: 100,
  /** Streams a client may reset within `resetWindowMs` before the session gets GOAWAY (rapid reset). */
  maxResetsPerWindow: 500,
  resetWindowMs: 10_000,
} as const;

/**
 * HTTP/2 when the client offers it, HTTP/1.1 otherwise (health checks, `curl --http1.1`); a client
 * offering neither is refused in the handshake (no_application_protocol). A client that sends no
 * ALPN at all is not asked and speaks HTTP/1.1.
 */
export function chooseApplicationProtocol({ protocols }: { protocols: string[] }): string | undefined {
  if (protocols.includes("h2")) return "h2";
  if (protocols.includes("http/1.1")) return "http/1.1";
  return undefined;
}

/**
 * Closes a session whose client resets streams abusively (open-and-reset, CVE-2023-44487): more
 * than `maxResetsPerWindow` resets in a window get GOAWAY ENHANCE_YOUR_CALM and the session ends.
 */
function watchResets(session: Http2Session, log: Logger) {
  let windowStart = performance.now();
  let resets = 0;
  session.on("stream", (stream) => {
    stream.once("close", () => {
      // A stream the client cancelled (RST_STREAM CANCEL) rather than one that ended normally.
      if (stream.rstCode !== constants.NGHTTP2_CANCEL) return;
      const now = performance.now();
      if (now - windowStart > http2Limits.resetWindowMs) {
        windowStart = now;
        resets = 0;
      }
      if (++resets === http2Limits.maxResetsPerWindow + 1 && !session.destroyed) {
        log.warn(
          { resets, windowMs: http2Limits.resetWindowMs, peer: session.socket?.remoteAddress },
          "closing an HTTP/2 session that resets streams abusively",
        );
        session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
        // The GOAWAY is flushed first; then the connection ends whatever the client still has open
        // (destroying the session alone left its TLS socket open here).
        const socket = session.socket;
        setImmediate(() => {
          session.destroy();
          socket?.destroy();
        });
      }
    });
  });
}

function pingOrDestroy(session: Http2Session, timeoutMs: number) {
  // ping() on a destroyed or closed session throws ERR_HTTP2_INVALID_SESSION.
  if (session.destroyed || session.closed) return;
  const timer = setTimeout(() => session.destroy(), timeoutMs);
  timer.unref();
  const sent = session.ping((err) => {
    clearTimeout(timer);
    if (err && !session.destroyed) session.destroy();
  });
  if (!sent) clearTimeout(timer);
}

interface CloseState {
  server: Http2SecureServer;
  sessions: Set<Http2Session>;
  sockets: Set<TLSSocket>;
  /** Aborts every open call. */
  shutdown: () => void;
  /** Resolves when every response has been completely written. */
  allFinished: Promise<void>;
  deadlineMs: number;
  markDraining: () => void;
}

/** After every response was written, how long clients get to read to their ends before their connections are closed. */
const lingerAfterLastResponseMs = 1000;

async function closeGracefully(state: CloseState): Promise<{ forced: boolean }> {
  state.markDraining();
  state.shutdown();
  const closed = new Promise<void>((resolve) => state.server.close(() => resolve()));
  for (const session of state.sessions) if (!session.closed) session.close();
  // HTTP/1.1 keep-alive sockets would hold server.close() open; HTTP/2 ones close with their session.
  for (const socket of state.sockets) if (socket.alpnProtocol !== "h2") socket.end();
  let deadlineTimer: NodeJS.Timeout | undefined;
  let lingerTimer: NodeJS.Timeout | undefined;
  let forced = false;
  const cut = () => {
    for (const session of state.sessions) session.destroy();
    for (const socket of state.sockets) socket.destroy();
  };
  const deadline = new Promise<void>((resolve) => {
    deadlineTimer = setTimeout(() => {
      forced = true;
      cut();
      resolve();
    }, state.deadlineMs);
  });
  // Nothing is left to send: connections still open are only waiting for clients that stopped reading.
  const lingered = state.allFinished.then(
    () =>
      new Promise<void>((resolve) => {
        lingerTimer = setTimeout(() => {
          cut();
          resolve();
        }, lingerAfterLastResponseMs);
      }),
  );
  await Promise.race([closed, deadline, lingered]);
  clearTimeout(deadlineTimer);
  clearTimeout(lingerTimer);
  await closed;
  return { forced };
}

function headerValue(value: string | string[] | undefined): string | null {
  return typeof value === "string" ? value : null;
}

function serveMetrics(req: Http2ServerRequest, res: Http2ServerResponse, options: ServerOptions) {
  const token = options.metrics?.token;
  if (!options.metrics || !token) {
    return sendJson(res, 404, { code: "not_found", message: "metrics are off on this listener: set METRICS_TOKEN (a first `npm start` generates one)" });
  }
  if (!metricsAuthorized(headerValue(req.headers.authorization) ?? undefined, token)) {
    res.setHeader("www-authenticate", 'Bearer realm="metrics"');
    return sendJson(res, 401, { code: "unauthenticated", message: "send Authorization: Bearer <METRICS_TOKEN>" });
  }
  options.metrics.scrape().then(
    ({ contentType, text }) => {
      res.writeHead(200, { "content-type": contentType, "cache-control": "no-store" });
      res.end(text);
    },
    (err: unknown) => {
      options.log.error({ err }, "collecting metrics failed");
      sendJson(res, 503, { code: "unavailable", message: "collecting metrics failed; the log says why" });
    },
  );
}

function sendJson(res: Http2ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(text);
}
