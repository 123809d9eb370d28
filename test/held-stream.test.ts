import { connect as http2Connect, type IncomingHttpHeaders } from "node:http2";
import { create, toBinary, type DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createValidateInterceptor } from "@connectrpc/validate";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentService, SubscribeRequestSchema } from "../gen/myosicam/agent/v1/agent_pb.js";
import { callMetrics } from "../services/lib/metrics.js";
import { createRequestContextInterceptor } from "../services/lib/request-context.js";
import { createServer, type RunningServer } from "../services/lib/server.js";
import { loadTlsIdentity, type TlsIdentity } from "../services/lib/tls.js";
import { makeTempDir } from "./helpers/cli.js";
import { eventually } from "./helpers/eventually.js";
import { captureLogs } from "./helpers/log-capture.js";
import { everydayServerOptions } from "./helpers/server-options.js";

const test = suite("held streams: the agent's command stream served without connect's stream plumbing");

const subscribePath = `/${AgentService.typeName}/${AgentService.method.subscribe.name}`;

let tls: TlsIdentity;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
/** The same routes, gate and interceptors twice: on the held path, and on connect's only. */
let held: RunningServer;
let plain: RunningServer;
/** Calls each server served on the held path. */
let heldCalls: { held: () => number; plain: () => number };
let logs: ReturnType<typeof captureLogs>;
/** Another server like those two, for a test that stops it. */
let startServer: (heldStreams: boolean) => ReturnType<typeof createServer>;

/**
 * Subscribe as the tests need it: `agentVersion` says what to do — "0.1.0" yields two keepalives
 * and ends; "fail" yields one, then fails; "trailer" sets a trailer; "wait" waits for its end;
 * "flood" yields 64 KiB commands without end (and tells `floodEnded` when it is stopped).
 */
let floodEnded: () => void = () => undefined;
const routes = (router: ConnectRouter) =>
  router.service(AgentService, {
    async *subscribe(req, ctx) {
      ctx.responseHeader.set("x-seen-version", req.agentVersion);
      yield { message: { case: "keepalive", value: { serverTime: { seconds: 1n } } } };
      if (req.agentVersion === "fail") throw new ConnectError("the hub went away", Code.Unavailable, { "retry-after": "7" });
      if (req.agentVersion === "wait") {
        await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
        ctx.signal.throwIfAborted();
      }
      if (req.agentVersion === "trailer") ctx.responseTrailer.set("x-commands-sent", "0");
      if (req.agentVersion === "flood") {
        try {
          for (let n = 0; ; n++) yield { message: { case: "command", value: { id: `${n}-${"x".repeat(64 * 1024)}` } } };
        } finally {
          floodEnded();
        }
      }
      yield { message: { case: "command", value: { id: "c1" } } };
    },
  });

/** Refuses callers that say so, before the body is read (as the signature gate does). */
let gateReached: () => void = () => undefined;
const requestGate = (ctx: HandlerContext) => {
  if (ctx.requestHeader.get("x-tell-gate") !== null) gateReached();
  if (ctx.requestHeader.get("x-refuse") !== null) throw new ConnectError("request signature rejected", Code.Unauthenticated);
};

test.before(async () => {
  dir = await makeTempDir("held-stream");
  tls = await loadTlsIdentity({ dataDir: dir.path });
  logs = captureLogs();
  const start = (heldStreams: boolean) =>
    createServer({
      name: "panel",
      tls,
      routes,
      requestGate,
      ...(heldStreams ? { heldStreams: [AgentService.method.subscribe] } : {}),
      interceptors: [createRequestContextInterceptor(logs.log, new Map(), callMetrics), createValidateInterceptor()],
      ...everydayServerOptions(logs.log),
    });
  startServer = start;
  const heldServer = start(true);
  const plainServer = start(false);
  heldCalls = { held: heldServer.heldCalls, plain: plainServer.heldCalls };
  held = await heldServer.listen(0, "127.0.0.1");
  plain = await plainServer.listen(0, "127.0.0.1");
});
test.after(async () => {
  await held.close(2000);
  await plain.close(2000);
  await dir.remove();
});

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  /** The response body as envelopes: flags and payload (JSON text for the end of the stream). */
  envelopes: Array<{ flags: number; payload: string }>;
}

/** One Connect streaming call written by hand, so both servers get exactly the same bytes. */
async function rawCall(url: string, body: Uint8Array, extraHeaders: Record<string, string> = {}): Promise<RawAnswer> {
  const session = http2Connect(url, { ca: tls.cert });
  try {
    return await new Promise<RawAnswer>((resolve, reject) => {
      session.on("error", reject);
      const stream = session.request({
        ":method": "POST",
        ":path": subscribePath,
        "content-type": "application/connect+proto",
        "x-request-id": "held-stream-test",
        ...extraHeaders,
      });
      let head: IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      stream.on("response", (h) => (head = h));
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("error", reject);
      stream.on("end", () => {
        const bytes = Buffer.concat(chunks);
        const envelopes: RawAnswer["envelopes"] = [];
        for (let at = 0; at + 5 <= bytes.length; ) {
          const length = bytes.readUInt32BE(at + 1);
          const payload = bytes.subarray(at + 5, at + 5 + length);
          envelopes.push({ flags: bytes[at]!, payload: bytes[at]! & 2 ? payload.toString("utf8") : payload.toString("hex") });
          at += 5 + length;
        }
        const headers: Record<string, string> = {};
        for (const name of ["content-type", "x-request-id", "x-seen-version", "connect-content-encoding"]) {
          if (typeof head[name] === "string") headers[name] = head[name] as string;
        }
        resolve({ status: Number(head[":status"]), headers, envelopes });
      });
      stream.end(body);
    });
  } finally {
    session.close();
  }
}

function envelope(flags: number, payload: Uint8Array): Uint8Array {
  const out = Buffer.alloc(5 + payload.length);
  out[0] = flags;
  out.writeUInt32BE(payload.length, 1);
  out.set(payload, 5);
  return out;
}

const request = (agentVersion: string) => envelope(0, toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { agentVersion })));

/** What both servers answer must be the same bytes; answers the held server's. */
async function sameAnswer(body: Uint8Array, headers: Record<string, string> = {}): Promise<RawAnswer> {
  const servedBefore = heldCalls.held();
  const fromHeld = await rawCall(held.url, body, headers);
  assert.is(heldCalls.held(), servedBefore + 1, "the held server served it on the held path");
  const fromConnect = await rawCall(plain.url, body, headers);
  assert.is(heldCalls.plain(), 0, "the other server never takes the held path");
  assert.equal(fromHeld, fromConnect, "the held path answers as connect does");
  return fromHeld;
}

const endOf = (answer: RawAnswer) =>
  JSON.parse(answer.envelopes.at(-1)!.payload) as { error?: { code: string; message: string }; metadata?: Record<string, string[]> };

test("a stream that ends: the same messages, headers and end of stream as connect's", async () => {
  const answer = await sameAnswer(request("0.1.0"));
  assert.is(answer.status, 200);
  assert.is(answer.headers["content-type"], "application/connect+proto");
  assert.is(answer.headers["x-request-id"], "held-stream-test");
  assert.is(answer.headers["x-seen-version"], "0.1.0", "a header the implementation set before its first message");
  assert.equal(
    answer.envelopes.map((e) => e.flags),
    [0, 0, 2],
  );
  assert.equal(endOf(answer), {});
});

test("trailers the implementation sets travel as end-of-stream metadata", async () => {
  const answer = await sameAnswer(request("trailer"));
  assert.equal(endOf(answer).metadata?.["x-commands-sent"], ["0"]);
});

test("an error after the first message ends the stream with its code, message and metadata", async () => {
  const answer = await sameAnswer(request("fail"));
  assert.is(answer.envelopes.length, 2);
  const end = endOf(answer);
  assert.equal(end.error, { code: "unavailable", message: "the hub went away" });
  assert.equal(end.metadata?.["retry-after"], ["7"]);
  assert.equal(end.metadata?.["x-request-id"], ["held-stream-test"]);
});

test("a call the request gate refuses gets the refusal and nothing else; its body is not read", async () => {
  const answer = await sameAnswer(request("0.1.0"), { "x-refuse": "1" });
  assert.is(answer.status, 200);
  assert.is(answer.envelopes.length, 1);
  assert.equal(endOf(answer).error, { code: "unauthenticated", message: "request signature rejected" });
});

test("a request that fails validation is refused with the field and the rule", async () => {
  const answer = await sameAnswer(request("not a version!"));
  const end = endOf(answer);
  assert.is(end.error?.code, "invalid_argument");
  assert.match(end.error!.message, /agent_version/);
});

test("bad bodies get invalid_argument or unimplemented in words, from either path", async () => {
  const truncated = request("0.1.0").subarray(0, 6);
  const compressed = envelope(1, toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { agentVersion: "0.1.0" })));
  const notProtobuf = envelope(0, Buffer.from([0xff, 0xff, 0xff, 0xff]));
  const two = Buffer.concat([request("0.1.0"), request("0.1.0")]);
  const cases: Array<[string, Uint8Array, string]> = [
    ["an envelope cut short", truncated, "invalid_argument"],
    ["a message marked compressed", compressed, "invalid_argument"],
    ["bytes that are not a protobuf message", notProtobuf, "invalid_argument"],
    ["no message at all", new Uint8Array(0), "unimplemented"],
    ["two messages", two, "unimplemented"],
  ];
  for (const [what, body, code] of cases) {
    for (const url of [held.url, plain.url]) {
      const answer = await rawCall(url, body);
      const end = endOf(answer);
      assert.is(end.error?.code, code, `${what} (${url === held.url ? "held path" : "connect"}): ${JSON.stringify(end)}`);
      assert.ok(end.error!.message.length > 10, `${what}: the message says why`);
    }
  }
});

test("the caller's deadline ends a waiting stream with deadline_exceeded; one past the server's maximum is refused", async () => {
  const timedOut = await sameAnswer(request("wait"), { "connect-timeout-ms": "200" });
  assert.is(endOf(timedOut).error?.code, "deadline_exceeded");
  const tooLong = await sameAnswer(request("0.1.0"), { "connect-timeout-ms": "600000" });
  assert.is(endOf(tooLong).error?.code, "invalid_argument");
});

test("a connect-es client in binary (the agent's way) and in JSON gets the same stream from the held server", async () => {
  for (const useBinaryFormat of [true, false]) {
    const servedBefore = heldCalls.held();
    const client = createClient(AgentService, createConnectTransport({ baseUrl: held.url, httpVersion: "2", useBinaryFormat, nodeOptions: { ca: tls.cert } }));
    const cases: string[] = [];
    for await (const res of client.subscribe({ agentVersion: "0.1.0" }, { timeoutMs: 0 })) cases.push(res.message.case ?? "");
    assert.equal(cases, ["keepalive", "command"]);
    const err = await (async () => {
      for await (const _ of client.subscribe({ agentVersion: "fail" }, { timeoutMs: 0 })) {
        // the error ends it
      }
    })().catch((e: unknown) => ConnectError.from(e));
    assert.is(err?.code, Code.Unavailable);
    assert.is(err?.metadata.get("retry-after"), "7");
    // Binary calls take the held path; JSON ones stay with connect.
    assert.is(heldCalls.held() - servedBefore, useBinaryFormat ? 2 : 0);
  }
});

test("a client that stops reading and then goes away: the stream ends and its implementation is stopped, on either path", async () => {
  for (const url of [held.url, plain.url]) {
    const ended = new Promise<void>((resolve) => (floodEnded = resolve));
    const session = http2Connect(url, { ca: tls.cert });
    session.on("error", () => undefined);
    const stream = session.request({ ":method": "POST", ":path": subscribePath, "content-type": "application/connect+proto" });
    stream.on("error", () => undefined);
    stream.end(request("flood"));
    // Read a little, stop reading (the server's writes back up against HTTP/2 flow control), and
    // go: the flood always has a next message to write after the connection closed.
    await new Promise<void>((resolve) => stream.once("data", () => resolve()));
    stream.pause();
    session.destroy();
    let timer: NodeJS.Timeout | undefined;
    const stopped = await Promise.race([ended.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 10_000)))]);
    clearTimeout(timer);
    assert.ok(stopped, `the implementation was stopped once its client went away (${url === held.url ? "held path" : "connect"})`);
  }
});

test("held streams are checked when the server is built: not server-streaming, not implemented, or mounted with options of its own is refused", () => {
  const build = (heldStreams: DescMethod[], mount: (router: ConnectRouter) => void) => () =>
    createServer({
      name: "panel",
      tls,
      routes: mount,
      heldStreams,
      interceptors: [],
      ...everydayServerOptions(logs.log),
    });
  assert.throws(build([AgentService.method.heartbeat], routes), /Heartbeat is not a server-streaming method/);
  assert.throws(
    build([AgentService.method.subscribe], () => undefined),
    /no implementation of myosicam.agent.v1.AgentService.Subscribe/,
  );
  assert.throws(
    build([AgentService.method.subscribe], (router) =>
      routes({ ...router, service: (service, impl) => router.service(service, impl, { readMaxBytes: 10 }) } as ConnectRouter),
    ),
    /Subscribe is held: mount its service without options of its own/,
  );
  build([AgentService.method.subscribe], routes)();
});

test("every call is logged once with its code, on either path", async () => {
  const before = logs.lines().filter((l) => l.rpc === "Subscribe" && l.requestId === "held-stream-logged").length;
  await rawCall(held.url, request("fail"), { "x-request-id": "held-stream-logged" });
  const lines = logs.lines().filter((l) => l.rpc === "Subscribe" && l.requestId === "held-stream-logged");
  assert.is(lines.length - before, 1);
  assert.is(lines.at(-1)!.code, "Unavailable");
});

/** The one "rpc …" line of a call, once it is logged. */
const callLine = (requestId: string) =>
  eventually(
    async () => logs.lines().find((l) => l.requestId === requestId && String(l.msg).startsWith("rpc ")),
    (line) => line !== undefined,
    `the log line of ${requestId}`,
  );

test("a caller that goes away while its body is on the way is logged as cancelled, not as a failure, on either path", async () => {
  for (const [path, url] of [
    ["held", held.url],
    ["plain", plain.url],
  ] as const) {
    const requestId = `held-stream-gone-${path}`;
    const session = http2Connect(url, { ca: tls.cert });
    session.on("error", () => undefined);
    try {
      const reached = new Promise<void>((resolve) => (gateReached = resolve));
      const stream = session.request({
        ":method": "POST",
        ":path": subscribePath,
        "content-type": "application/connect+proto",
        "x-request-id": requestId,
        "x-tell-gate": "1",
      });
      stream.on("error", () => undefined);
      // Part of the body, then nothing: the server is reading it when the caller goes (its
      // process killed; Node's own stream.close() would send END_STREAM first).
      stream.write(request("0.1.0").subarray(0, 3));
      await reached;
      session.destroy();
      const line = (await callLine(requestId))!;
      assert.is(line.code, "Canceled", `${path}: ${line.msg}`);
      assert.is(line.level, 30, path);
    } finally {
      session.destroy();
    }
  }
});

test("a caller that leaves a held stream is logged as cancelled, not as the server stopping, on either path", async () => {
  for (const [path, url] of [
    ["held", held.url],
    ["plain", plain.url],
  ] as const) {
    const requestId = `held-stream-left-${path}`;
    const session = http2Connect(url, { ca: tls.cert });
    session.on("error", () => undefined);
    const stream = session.request({ ":method": "POST", ":path": subscribePath, "content-type": "application/connect+proto", "x-request-id": requestId });
    stream.on("error", () => undefined);
    stream.end(request("wait"));
    await new Promise<void>((resolve) => stream.once("data", () => resolve()));
    // RST_STREAM with NO_ERROR, as a client that stops reading its stream closes it.
    stream.close();
    const line = (await callLine(requestId))!;
    session.destroy();
    assert.is(line.code, "Canceled", `${path}: ${line.msg} (${line.reason})`);
    assert.is(line.level, 30, path);
  }
});

test("a server that stops ends the streams it holds with unavailable, logged as information, on either path", async () => {
  for (const heldStreams of [true, false]) {
    const server = await startServer(heldStreams).listen(0, "127.0.0.1");
    const requestId = `held-stream-stopped-${heldStreams}`;
    const session = http2Connect(server.url, { ca: tls.cert });
    session.on("error", () => undefined);
    try {
      const stream = session.request({ ":method": "POST", ":path": subscribePath, "content-type": "application/connect+proto", "x-request-id": requestId });
      stream.on("error", () => undefined);
      stream.end(request("wait"));
      // The first keepalive: the stream is held.
      await new Promise<void>((resolve) => stream.once("data", () => resolve()));
      stream.resume();
      await server.close(2000);
      const line = (await callLine(requestId))!;
      assert.is(line.code, "Unavailable", String(heldStreams));
      assert.is(line.level, 30, `${heldStreams}: ${line.msg} (${line.reason})`);
      assert.is(line.msg, "rpc ended: the server is stopping");
    } finally {
      session.destroy();
    }
  }
});

test.run();
