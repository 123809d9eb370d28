import { create, type DescMethod, toBinary } from "@bufbuild/protobuf";
import { connect as http2Connect, constants as http2Constants, type Settings as Http2Settings } from "node:http2";
import { Code, ConnectError, createClient, createRouterTransport, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createValidateInterceptor } from "@connectrpc/validate";
import { connect as tlsConnect } from "node:tls";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentService } from "../gen/myosicam/agent/v1/agent_pb.js";
import { RegisterRequestSchema, RegistrationService } from "../gen/myosicam/agent/v1/registration_pb.js";
import { createRequestContextInterceptor } from "../services/lib/request-context.js";
import { callMetrics, processMetrics } from "../services/lib/metrics.js";
import { createServer, http2Limits } from "../services/lib/server.js";
import { loadTlsIdentity, type TlsIdentity } from "../services/lib/tls.js";
import { makeTempDir } from "./helpers/cli.js";
import { eventually } from "./helpers/eventually.js";
import { getHttp2 } from "./helpers/https.js";
import { captureLogs } from "./helpers/log-capture.js";

const test = suite("the HTTPS server and its interceptors");

let tls: TlsIdentity;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
test.before(async () => {
  dir = await makeTempDir("server");
  tls = await loadTlsIdentity({ dataDir: dir.path });
});
test.after(() => dir.remove());

const registration = {
  installToken: "b".repeat(64),
  agentId: "0b7d3c55-8f0e-4d53-9a7e-2f4f7a0c9b11",
  hostname: "h",
  ip: "10.0.0.1",
  os: "linux",
  osVersion: "",
  arch: "x64",
  agentVersion: "0.1.0",
};

test("an unexpected handler error reaches the caller as 'internal error' and the log with its cause", async () => {
  const logs = captureLogs();
  const routes = (router: ConnectRouter) =>
    router.service(RegistrationService, {
      register() {
        throw new Error('relation "install_tokens" does not exist');
      },
    });
  const interceptors = [createRequestContextInterceptor(logs.log, new Map([[RegistrationService.typeName, "agents"]])), createValidateInterceptor()];
  const client = createClient(RegistrationService, createRouterTransport(routes, { router: { interceptors } }));
  const err = await client.register(registration).catch((e: unknown) => ConnectError.from(e));
  assert.is((err as ConnectError).code, Code.Internal);
  assert.is((err as ConnectError).rawMessage, "internal error");
  const failure = logs.lines().find((l) => l.msg === "rpc failed");
  assert.ok(failure, logs.text());
  assert.is(failure.svc, "agents");
  assert.match(JSON.stringify(failure.err), /install_tokens/);
});

test("a stop drains an open server stream: the client sees Unavailable and no connection is cut by force", async () => {
  const logs = captureLogs();
  const { routes, opened } = heldSubscribe();
  const { server } = await plainServer({ routes, logs, heldSubscribe: true });
  const client = createClient(AgentService, agentLikeTransport(server.url));
  const received: string[] = [];
  const consumed = (async () => {
    for await (const res of client.subscribe({ agentVersion: "0.1.0" }, { timeoutMs: 0 })) received.push(res.message.case ?? "");
  })().then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  await opened;
  const result = await server.close(60_000);
  const err = await consumed;
  assert.equal(received, ["keepalive"]);
  assert.is(err?.code, Code.Unavailable, String(err));
  assert.is(result.forced, false, "closed gracefully, not at the deadline");
});

test("a stream the caller cancels (a closed browser tab) is logged as information, not as a refusal", async () => {
  const logs = captureLogs();
  const { routes, opened } = heldSubscribe();
  const { server } = await plainServer({ routes, logs, heldSubscribe: true });
  const client = createClient(AgentService, agentLikeTransport(server.url));
  const abort = new AbortController();
  const consumed = readUntilCancelled(client, abort.signal);
  await opened;
  abort.abort();
  await consumed;
  const line = await eventually(
    async () => logs.lines().find((l) => l.rpc === "Subscribe"),
    (l) => l !== undefined,
    "the stream's log line",
  );
  assert.is(line!.msg, "rpc cancelled by the caller");
  assert.is(line!.level, 30);
  assert.is(line!.code, "Canceled");
  await server.close(5_000);
});

test("/metrics: not served without a token; with one, an agent's open command stream counts as a connected agent until it ends", async () => {
  const off = await plainServer();
  const none = await getHttp2(`${off.server.url}/metrics`, tls.cert);
  assert.is(none.status, 404);
  assert.match(none.body, /set METRICS_TOKEN/);
  await off.server.close(1000);

  const token = "m".repeat(40);
  const { routes, opened } = heldSubscribe();
  const { server } = await plainServer({ routes, metricsToken: token, heldSubscribe: true });
  const scrape = async () => (await getHttp2(`${server.url}/metrics`, tls.cert, { authorization: `Bearer ${token}` })).body;
  const gauge = (text: string, name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)?.[1] ?? -1);
  const before = gauge(await scrape(), "myosicam_connected_agents");
  const client = createClient(AgentService, agentLikeTransport(server.url));
  const abort = new AbortController();
  const consumed = readUntilCancelled(client, abort.signal);
  await opened;
  const during = await scrape();
  assert.is(gauge(during, "myosicam_connected_agents"), before + 1);
  assert.match(during, /myosicam_open_streams\{service="myosicam\.agent\.v1\.AgentService",method="Subscribe"\} [1-9]/);
  abort.abort();
  await consumed;
  await eventually(
    async () => gauge(await scrape(), "myosicam_connected_agents"),
    (n) => n === before,
    "the agent counted out when its stream ended",
  );
  const after = await scrape();
  assert.match(after, /myosicam_rpc_duration_seconds_count\{service="myosicam\.agent\.v1\.AgentService",method="Subscribe",code="Canceled"\} [1-9]/);
  await server.close(5_000);
});

test("admission control: past the pending-call limit a call is refused at once with Unavailable and a retry hint; open streams do not count; it accepts again once calls are answered", async () => {
  const logs = captureLogs();
  const { routes: streamRoutes, opened } = heldSubscribe();
  const held = heldRegistrations();
  const routes = (router: ConnectRouter) => {
    streamRoutes(router);
    held.routes(router);
  };
  const { server } = await plainServer({ routes, logs, maxPendingCalls: 2, heldSubscribe: true });
  const transport = agentLikeTransport(server.url);
  const agents = createClient(AgentService, transport);
  const registrations = createClient(RegistrationService, transport);
  const abort = new AbortController();
  // A held stream answered its first message: it no longer counts as pending.
  const stream = readUntilCancelled(agents, abort.signal);
  await opened;
  const waiting = [registrations.register(registration), registrations.register(registration)];
  await eventually(
    async () => held.arrived(),
    (n) => n === 2,
    "two registrations waiting in the handler",
  );
  const refused = await registrations.register(registration).catch((e: unknown) => ConnectError.from(e));
  assert.instance(refused, ConnectError);
  assert.is((refused as ConnectError).code, Code.Unavailable);
  assert.is((refused as ConnectError).metadata.get("retry-after"), "5");
  assert.match((refused as ConnectError).rawMessage, /busy .*try again in 5 s/);
  assert.is(held.arrived(), 2, "the refused call never reached the handler");
  assert.ok(logs.lines().some((l) => String(l.msg).startsWith("overloaded: refusing new calls")));
  held.answer();
  await Promise.all(waiting);
  assert.is((await registrations.register(registration)).serverId, "s");
  // When the log says refusing is over (5 s without a refusal): test/lib/admission.test.ts.
  abort.abort();
  await stream;
  await server.close(5_000);
});

test("admission control: a backlog that has waited too long is refused with a retry hint, whatever the count limit", async () => {
  const logs = captureLogs();
  const { routes, arrived, answer } = heldRegistrations();
  const { server } = await plainServer({ routes, logs, queueLimit: { calls: 2, waitMs: 50 } });
  const client = createClient(RegistrationService, createConnectTransport({ baseUrl: server.url, httpVersion: "2", nodeOptions: { ca: tls.cert } }));
  const waiting = [client.register(registration), client.register(registration)];
  await eventually(
    async () => arrived(),
    (n) => n === 2,
    "two registrations waiting in the handler",
  );
  // Until the two have waited over 50 ms a new call is taken on (and, held like them, gives up
  // after its own short deadline); from then on new calls are refused at once.
  const refused = await eventually(
    async () => client.register(registration, { timeoutMs: 300 }).catch((e: unknown) => ConnectError.from(e)),
    (r) => r instanceof ConnectError && r.code === Code.Unavailable,
    "a call refused for the old backlog",
  );
  assert.is((refused as ConnectError).code, Code.Unavailable);
  assert.is((refused as ConnectError).metadata.get("retry-after"), "5");
  assert.match((refused as ConnectError).rawMessage, /\d calls waiting, 2 of them over 0\.05 s/);
  answer();
  await Promise.all(waiting);
  await server.close(5_000);
});

test("admission control leaves methods with a bounded queue of their own to it: their waiting calls are neither counted nor refused", async () => {
  const { routes, arrived, answer } = heldRegistrations();
  const { server } = await plainServer({ routes, maxPendingCalls: 1, ownQueues: [RegistrationService.method.register] });
  const client = createClient(RegistrationService, createConnectTransport({ baseUrl: server.url, httpVersion: "2", nodeOptions: { ca: tls.cert } }));
  const waiting = [1, 2, 3].map(() => client.register(registration));
  await eventually(
    async () => arrived(),
    (n) => n === 3,
    "three registrations waiting in the handler, past a limit of one pending call",
  );
  answer();
  assert.is((await Promise.all(waiting)).length, 3);
  await server.close(5_000);
});

test("past the connection limit (from the open-file limit) a new connection is closed at once and the log names the limit to raise", async () => {
  const logs = captureLogs();
  const { server } = await plainServer({ logs, maxConnections: 2 });
  const sessions = [0, 1, 2].map(() => {
    const session = http2Connect(server.url, { ca: tls.cert });
    session.on("error", () => {});
    return session;
  });
  try {
    const outcomes = await Promise.all(
      sessions.map(
        (session) =>
          new Promise<string>((resolve) => {
            session.once("remoteSettings", () => resolve("held"));
            session.once("close", () => resolve("closed"));
          }),
      ),
    );
    assert.equal(outcomes.filter((o) => o === "held").length, 2, outcomes.join());
    const line = logs.lines().find((l) => String(l.msg).startsWith("refusing new connections"));
    assert.ok(line, logs.text());
    assert.match(String(line!.msg), /RLIMIT_NOFILE.*LimitNOFILE/);
  } finally {
    for (const session of sessions) session.destroy();
    await server.close(1000);
  }
});

test("log redaction hides secrets under their usual names, at any of the first three depths", () => {
  const logs = captureLogs();
  logs.log.info(
    {
      password: "pw-canary-1",
      token: "tok-canary-2",
      request: { installToken: "tok-canary-3", headers: { authorization: "Bearer tok-canary-4", "x-signature": "sig-canary-5" } },
      smtp: { apiKey: "key-canary-6" },
      user: "alice",
    },
    "something happened",
  );
  const text = logs.text();
  for (const canary of ["pw-canary-1", "tok-canary-2", "tok-canary-3", "tok-canary-4", "sig-canary-5", "key-canary-6"]) {
    assert.not.ok(text.includes(canary), `${canary} leaked: ${text}`);
  }
  assert.ok(text.includes("alice"), "ordinary fields stay");
});

/** An AgentService whose Subscribe sends one keepalive, then holds the stream until the call ends; `opened` resolves at the keepalive. */
function heldSubscribe() {
  let streamOpened!: () => void;
  const opened = new Promise<void>((resolve) => (streamOpened = resolve));
  const routes = (router: ConnectRouter) =>
    router.service(AgentService, {
      async *subscribe(_req, ctx) {
        yield { message: { case: "keepalive", value: {} } };
        streamOpened();
        await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
        ctx.signal.throwIfAborted();
      },
    });
  return { routes, opened };
}

/** A transport speaking as the agent does (binary Connect): its Subscribe takes the held-stream path. */
const agentLikeTransport = (url: string) => createConnectTransport({ baseUrl: url, httpVersion: "2", useBinaryFormat: true, nodeOptions: { ca: tls.cert } });

/** Reads a Subscribe stream until `signal` cancels it. */
const readUntilCancelled = (client: ReturnType<typeof createClient<typeof AgentService>>, signal: AbortSignal) =>
  (async () => {
    for await (const _ of client.subscribe({ agentVersion: "0.1.0" }, { signal, timeoutMs: 0 })) {
      // reads until cancelled
    }
  })().catch(() => undefined);

/** Registrations that wait in the handler until the test lets them answer; `arrived` counts them. */
function heldRegistrations() {
  let answer!: () => void;
  const answered = new Promise<void>((resolve) => (answer = resolve));
  let arrived = 0;
  return {
    routes: (router: ConnectRouter) =>
      router.service(RegistrationService, {
        async register() {
          arrived++;
          await answered;
          return { serverId: "s", agentToken: "t", heartbeatIntervalSeconds: 60 };
        },
      }),
    arrived: () => arrived,
    answer: () => answer(),
  };
}

/** A server on a free port; by default with a Register that answers at once, for the transport-level tests. */
async function plainServer(
  options: {
    routes?: (router: ConnectRouter) => void;
    logs?: ReturnType<typeof captureLogs>;
    bodyReadTimeoutMs?: number;
    metricsToken?: string;
    maxPendingCalls?: number;
    queueLimit?: { calls: number; waitMs: number };
    maxConnections?: number;
    /** Serve Subscribe on the held-stream path (as the panel does for agents). */
    heldSubscribe?: boolean;
    ownQueues?: DescMethod[];
    requestGate?: (ctx: HandlerContext) => Promise<void>;
  } = {},
) {
  const logs = options.logs ?? captureLogs();
  const routes =
    options.routes ??
    ((router: ConnectRouter) =>
      router.service(RegistrationService, {
        register: () => ({ serverId: "s", agentToken: "t", heartbeatIntervalSeconds: 60 }),
      }));
  const { listen, openCalls, heldCalls } = createServer({
    name: "panel",
    tls,
    routes,
    interceptors: [createRequestContextInterceptor(logs.log, new Map(), callMetrics)],
    readiness: async () => ({ ready: true, checks: {} }),
    metrics: { token: options.metricsToken, scrape: async () => ({ contentType: processMetrics.contentType, text: await processMetrics.metrics() }) },
    log: logs.log,
    readMaxBytes: 1 << 20,
    bodyReadTimeoutMs: options.bodyReadTimeoutMs ?? 30_000,
    maxTimeoutMs: 60_000,
    pingIntervalMs: 30_000,
    maxPendingCalls: options.maxPendingCalls,
    queueLimit: options.queueLimit,
    maxConnections: options.maxConnections,
    ownQueues: options.ownQueues,
    requestGate: options.requestGate,
    ...(options.heldSubscribe ? { heldStreams: [AgentService.method.subscribe] } : {}),
  });
  return { server: await listen(0, "127.0.0.1"), logs, openCalls, heldCalls };
}

test("a finished call is forgotten once its response closes: 50 unary calls on one connection leave only the held stream", async () => {
  const { routes: streamRoutes, opened } = heldSubscribe();
  const routes = (router: ConnectRouter) => {
    streamRoutes(router);
    router.service(RegistrationService, { register: () => ({ serverId: "s", agentToken: "t", heartbeatIntervalSeconds: 60 }) });
  };
  const { server, openCalls, heldCalls } = await plainServer({ routes, heldSubscribe: true });
  const transport = agentLikeTransport(server.url);
  const abort = new AbortController();
  const stream = readUntilCancelled(createClient(AgentService, transport), abort.signal);
  await opened;
  const registrations = createClient(RegistrationService, transport);
  for (let i = 0; i < 50; i++) await registrations.register(registration);
  await eventually(
    async () => openCalls(),
    (n) => n === 1,
    "only the held stream left open",
  );
  assert.is(heldCalls(), 1, "the agent-like stream took the held-stream path");
  abort.abort();
  await stream;
  await eventually(
    async () => openCalls(),
    (n) => n === 0,
    "nothing open once the stream ended",
  );
  await server.close(5_000);
});

test("HTTP/2 limits are advertised: concurrent streams and header list size; the HPACK table for clients' headers stays the default; calls on one connection work", async () => {
  const { server } = await plainServer();
  const session = http2Connect(server.url, { ca: tls.cert });
  try {
    const settings = await new Promise<Http2Settings>((resolve) => session.once("remoteSettings", resolve));
    assert.is(settings.maxConcurrentStreams, http2Limits.maxConcurrentStreams);
    assert.is(settings.maxHeaderListSize, http2Limits.maxHeaderListBytes);
    // Advertising less would oblige every client to announce the smaller table first; HAProxy 2.6's
    // HTTP/2 backend does not (its calls failed with 502). Only the table for responses is off.
    assert.is(settings.headerTableSize, 4096);
    for (let call = 0; call < 3; call++) {
      const status = await new Promise<number>((resolve, reject) => {
        const stream = session.request({ ":path": "/healthz", "x-request-id": `hpack-${call}`, "user-agent": "myosicam-test" });
        stream.on("response", (headers) => resolve(Number(headers[":status"])));
        stream.on("error", reject);
        stream.resume();
      });
      assert.is(status, 200, `call ${call} on the same connection`);
    }
  } finally {
    session.destroy();
    await server.close(1000);
  }
});

test("ALPN: HTTP/2 when offered, HTTP/1.1 for a client offering only it or nothing; a client offering neither is refused in the handshake", async () => {
  const { server } = await plainServer();
  const negotiate = (ALPNProtocols: string[] | undefined) =>
    new Promise<string>((resolve) => {
      const socket = tlsConnect({ host: "127.0.0.1", port: server.port, ca: tls.cert, servername: "localhost", ...(ALPNProtocols ? { ALPNProtocols } : {}) });
      socket.once("secureConnect", () => {
        resolve(`chose ${socket.alpnProtocol}`);
        socket.destroy();
      });
      socket.once("error", (err) => resolve(`refused: ${err.message}`));
    });
  try {
    assert.is(await negotiate(["http/1.1", "h2"]), "chose h2");
    assert.is(await negotiate(["http/1.1"]), "chose http/1.1");
    assert.is(await negotiate(undefined), "chose false");
    assert.match(await negotiate(["spdy/3"]), /refused: .*no application protocol/i);
  } finally {
    await server.close(1000);
  }
});

test("a connection that opens and resets streams abusively is closed by the server", async () => {
  const { server, logs } = await plainServer();
  const session = http2Connect(server.url, { ca: tls.cert });
  session.on("error", () => {});
  try {
    await new Promise((resolve) => session.once("remoteSettings", resolve));
    for (let i = 0; i < http2Limits.maxResetsPerWindow * 2; i++) {
      const stream = session.request({ ":method": "POST", ":path": "/myosicam.agent.v1.RegistrationService/Register", "content-type": "application/proto" });
      stream.on("error", () => {});
      stream.close(http2Constants.NGHTTP2_CANCEL);
      if (i % 50 === 49) await new Promise((resolve) => setImmediate(resolve));
    }
    await eventually(
      async () => logs.lines().some((l) => l.msg === "closing an HTTP/2 session that resets streams abusively"),
      (closed) => closed,
      "the abusive session to be closed",
    );
  } finally {
    session.destroy();
    // Nothing of the abusive session is left for the close to wait on.
    assert.is((await server.close(5000)).forced, false);
  }
});

test("a request body that trickles in is answered 408 and closed after the body read timeout", async () => {
  const { server, logs } = await plainServer({ bodyReadTimeoutMs: 500 });
  const session = http2Connect(server.url, { ca: tls.cert });
  try {
    const stream = session.request({ ":method": "POST", ":path": "/myosicam.agent.v1.RegistrationService/Register", "content-type": "application/json" });
    stream.on("error", () => {});
    stream.write("{");
    const [status, body] = await new Promise<[number, string]>((resolve) => {
      let text = "";
      let code = 0;
      stream.on("response", (h) => (code = Number(h[":status"])));
      stream.on("data", (c: Buffer) => (text += c.toString()));
      stream.on("close", () => resolve([code, text]));
    });
    assert.is(status, 408);
    assert.is(JSON.parse(body).code, "deadline_exceeded");
    assert.ok(logs.lines().some((l) => l.msg === "request body too slow: closed"));
  } finally {
    session.destroy();
    await server.close(1000);
  }
});

test("a body that arrived while the request gate waited its turn is read, not refused as too slow", async () => {
  // The gate waits longer than the body may take (as a gate waiting for a database connection
  // does when thousands of agents come back at once); the body was sent at once.
  const { server, logs } = await plainServer({ bodyReadTimeoutMs: 300, requestGate: () => new Promise((resolve) => setTimeout(resolve, 900)) });
  try {
    const res = await createClient(RegistrationService, agentLikeTransport(server.url)).register(registration);
    assert.is(res.serverId, "s");
    assert.not.ok(logs.lines().some((l) => l.msg === "request body too slow: closed"));
  } finally {
    await server.close(1000);
  }
});

test("a body cut off by the body read timeout is refused as too slow, never handed on as the whole body", async () => {
  let invoked = 0;
  const routes = (router: ConnectRouter) =>
    router.service(RegistrationService, {
      register: () => {
        invoked++;
        return { serverId: "s", agentToken: "t", heartbeatIntervalSeconds: 60 };
      },
    });
  const { server, logs } = await plainServer({ routes, bodyReadTimeoutMs: 300 });
  const session = http2Connect(server.url, { ca: tls.cert });
  try {
    // A Register message without its last field (agent_version, 7 bytes), which it sends last: what
    // arrived parses as a whole message on its own, so only the cut tells it from a complete body.
    const whole = toBinary(RegisterRequestSchema, create(RegisterRequestSchema, registration));
    const stream = session.request({ ":method": "POST", ":path": "/myosicam.agent.v1.RegistrationService/Register", "content-type": "application/proto" });
    stream.on("error", () => {});
    stream.write(whole.subarray(0, whole.byteLength - 7));
    const status = await new Promise<number>((resolve) => {
      let code = 0;
      stream.on("response", (h) => (code = Number(h[":status"])));
      stream.on("close", () => resolve(code));
      stream.resume();
    });
    assert.is(status, 408);
    assert.ok(logs.lines().some((l) => l.msg === "request body too slow: closed"));
    // The call is over for the server too: a registration from what arrived would have run by now.
    const after = await createClient(RegistrationService, agentLikeTransport(server.url)).register(registration);
    assert.is(after.serverId, "s");
    assert.is(invoked, 1, "only the whole registration reached the implementation");
  } finally {
    session.destroy();
    await server.close(1000);
  }
});

test.run();
