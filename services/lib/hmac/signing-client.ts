import type { Interceptor, Transport } from "@connectrpc/connect";
import type { UniversalClientFn } from "@connectrpc/connect/protocol";
import { createTransport } from "@connectrpc/connect/protocol-connect";
import { type Http2SessionManager, compressionGzip, createNodeHttpClient } from "@connectrpc/connect-node";
import { isIP } from "node:net";
import * as net from "node:net";
import type { Duplex } from "node:stream";
import * as tls from "node:tls";
import type * as http2 from "node:http2";
import { GuardedHttp2SessionManager } from "../http2-session-manager.js";
import { hmacHeaders, signingHeaders } from "./canonical.js";

/** Who signs: a caller id and its secret (a service caller's secret, or an agent's token). */
export interface SigningCredentials {
  callerId: string;
  secret: string;
}

/**
 * Wraps an HTTP client so that each request's body is collected and sent whole with its length,
 * after `addHeaders` had its look at it. The length lets the server's HTTP/2 layer refuse a body
 * cut short: Node ends a call given up before its body went out with END_STREAM and only then
 * resets it, and without a length the server takes that for a complete, empty body (a registration
 * audited as malformed, a signed call refused as forged and recorded).
 */
function wholeBodyClient(inner: UniversalClientFn, addHeaders: (header: Headers, url: string, body: Buffer) => void = () => {}): UniversalClientFn {
  return async (req) => {
    const chunks: Uint8Array[] = [];
    if (req.body) for await (const chunk of req.body) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const header = new Headers(req.header);
    addHeaders(header, req.url, body);
    header.set("content-length", String(body.length));
    return inner({
      ...req,
      header,
      body: (async function* () {
        yield body;
      })(),
    });
  };
}

/**
 * Wraps an HTTP client so that every request it sends is signed over its exact body bytes
 * (DESIGN.md §3.1): the body is collected, hashed, signed, and sent as collected, with its length.
 * Works for unary and server-streaming calls alike (both send one complete body). `credentials` may
 * change between calls (token rotation); `nowSeconds` is injectable for tests.
 */
export function createSigningHttpClient(
  inner: UniversalClientFn,
  credentials: () => SigningCredentials,
  nowSeconds: () => number = () => Date.now() / 1000,
): UniversalClientFn {
  return async (req) => {
    let signedAt = "";
    const response = await wholeBodyClient(inner, (header, url, body) => {
      const { callerId, secret } = credentials();
      const signed = signingHeaders({ callerId, secret, procedure: new URL(url).pathname, body, nowSeconds: nowSeconds() });
      for (const [name, value] of Object.entries(signed)) header.set(name, value);
      signedAt = signed[hmacHeaders.timestamp] ?? "";
    })(req);
    response.header.set(signedAtHeader, signedAt);
    return response;
  };
}

/**
 * Set by the signing client on every answer it receives (never sent): the X-Timestamp the request
 * was signed with. A refusal's clock skew is measured from it, not from the time the answer came:
 * a clock put right while the call was under way would otherwise hide the skew the panel saw.
 */
export const signedAtHeader = "x-myosicam-signed-at";

export interface SignedTransportOptions {
  baseUrl: string;
  credentials: SigningCredentials | (() => SigningCredentials);
  /** Default "2". */
  httpVersion?: "1.1" | "2";
  /** Trust anchors (a pinned or self-signed certificate). */
  ca?: string;
  /** Extra check of the server's certificate after chain verification (certificate pinning). */
  checkServerIdentity?: (host: string, cert: import("node:tls").PeerCertificate) => Error | undefined;
  nowSeconds?: () => number;
  /** Deadline for unary calls; a stream call passes `timeoutMs: 0` itself. */
  defaultTimeoutMs?: number;
  /** Client interceptors (e.g. translating errors into words for a person). */
  interceptors?: Interceptor[];
  /** Whether responses may come gzip-compressed (default true). */
  acceptCompression?: boolean;
  /** HTTP/2 PINGs while no data arrives; a connection whose PING goes unanswered is closed (default: none). */
  keepalive?: { pingIntervalMs: number; pingTimeoutMs: number };
  /**
   * How long a new HTTP/2 connection may take from the TCP connect to the end of the TLS handshake
   * (default 30 s). connect-node waits for a connection without a limit, and every call of the
   * transport waits on it: one accepted and then never answered (a black hole, a stuck proxy)
   * would hold them all for good. Past this it is closed and the calls fail with Unavailable.
   */
  connectTimeoutMs?: number;
  /** An HTTP/2 connection the caller owns (and closes when done) instead of one the transport keeps per origin. */
  sessionManager?: Http2SessionManager;
}

/**
 * The socket of a new HTTP/2 connection, as Node makes it (TLS with ALPN h2 and SNI for https, TCP
 * for http), destroyed with a reason when it is not ready within `timeoutMs`.
 */
function boundedConnection(timeoutMs: number) {
  return (authority: URL, sessionOptions: http2.SessionOptions): Duplex => {
    // The session's options are the TLS options too (ca, checkServerIdentity), as Node passes them.
    const options = sessionOptions as tls.ConnectionOptions;
    const host = authority.hostname.replace(/^\[|\]$/g, "");
    const secure = authority.protocol === "https:";
    const port = Number(authority.port) || (secure ? 443 : 80);
    const socket = secure
      ? tls.connect({ ...options, host, port, ALPNProtocols: ["h2"], servername: isIP(host) ? undefined : host })
      : net.connect({ host, port });
    const timer = setTimeout(() => {
      // ETIMEDOUT: connect-node answers the calls waiting on it with Unavailable, as for a refused connection.
      const reason = Object.assign(
        new Error(`${authority.host} accepted the connection but did not complete the ${secure ? "TLS handshake" : "connection"} within ${timeoutMs / 1000} s`),
        { code: "ETIMEDOUT" },
      );
      socket.destroy(reason);
    }, timeoutMs);
    timer.unref();
    socket.once(secure ? "secureConnect" : "connect", () => clearTimeout(timer));
    socket.once("close", () => clearTimeout(timer));
    return socket;
  };
}

/** A Connect transport whose every call is HMAC-signed: what services and agents use to call out. */
export function createSignedTransport(options: SignedTransportOptions): Transport {
  const credentials = typeof options.credentials === "function" ? options.credentials : () => options.credentials as SigningCredentials;
  return connectTransport(options, (inner) => createSigningHttpClient(inner, credentials, options.nowSeconds));
}

export type UnsignedTransportOptions = Omit<SignedTransportOptions, "credentials" | "nowSeconds">;

/**
 * A Connect transport for the one call an agent makes unsigned (registration, authenticated by its
 * install token): the signed transport's connection handling and whole bodies sent with their length.
 */
export function createUnsignedTransport(options: UnsignedTransportOptions): Transport {
  return connectTransport(options, (inner) => wholeBodyClient(inner));
}

function connectTransport(options: UnsignedTransportOptions, wrap: (inner: UniversalClientFn) => UniversalClientFn): Transport {
  const ca = {
    ...(options.ca ? { ca: options.ca } : {}),
    ...(options.checkServerIdentity ? { checkServerIdentity: options.checkServerIdentity } : {}),
  };
  // One HTTP/2 connection per origin for the transport's lifetime (the provider is asked per call).
  const sessions = new Map<string, Http2SessionManager>();
  const sessionFor = (url: string) => {
    if (options.sessionManager) return options.sessionManager;
    const origin = new URL(url).origin;
    let session = sessions.get(origin);
    if (!session) {
      const connectOptions = { ...ca, createConnection: boundedConnection(options.connectTimeoutMs ?? 30_000) };
      sessions.set(origin, (session = new GuardedHttp2SessionManager(origin, options.keepalive ?? {}, connectOptions)));
    }
    return session;
  };
  const inner =
    options.httpVersion === "1.1"
      ? createNodeHttpClient({ httpVersion: "1.1", nodeOptions: ca })
      : createNodeHttpClient({ httpVersion: "2", sessionProvider: sessionFor });
  // connect-node's createConnectTransport takes no custom HTTP client, so build the Connect
  // transport from the protocol package with connect-node's defaults.
  return createTransport({
    baseUrl: options.baseUrl,
    httpClient: wrap(inner),
    useBinaryFormat: true,
    interceptors: options.interceptors ?? [],
    acceptCompression: options.acceptCompression === false ? [] : [compressionGzip],
    sendCompression: null,
    compressMinBytes: 1024,
    readMaxBytes: 0xffffffff,
    writeMaxBytes: 0xffffffff,
    defaultTimeoutMs: options.defaultTimeoutMs ?? 30_000,
  });
}
