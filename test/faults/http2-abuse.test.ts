import { connect as netConnect } from "node:net";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { faultsLong } from "../helpers/fault-mode.js";
import { postFields, type RawHttp2, rawHttp2 } from "../helpers/raw-http2.js";
import { startUpProcess, type UpProcess } from "../helpers/up-process.js";

/**
 * HTTP/2 abuse against a real `myosicam up`, from clients that write frames by hand: many streams
 * on one connection, open-and-reset, a header block never finished, bodies that trickle, and many
 * connections that never speak. Each time the offender is closed, the process's memory stays
 * bounded and `/healthz` answers within 100 ms meanwhile. The limits are shortened for the test
 * (ping every 2 s, TLS handshake 3 s, request body 3 s); their defaults are in the README.
 */
const test = suite("HTTP/2 abuse: offenders are closed, memory stays bounded, /healthz stays fast");

const scale = faultsLong ? 5 : 1;
const pingSeconds = 2;
const handshakeSeconds = 3;
const bodySeconds = 3;
/** A path whose body the server must read before it can answer (registration is unsigned). */
const path = "/myosicam.agent.v1.RegistrationService/Register";

let stack: UpProcess;
let url: string;

test.before(async () => {
  stack = await startUpProcess("abuse", {
    HTTP2_PING_INTERVAL_SECONDS: String(pingSeconds),
    TLS_HANDSHAKE_TIMEOUT_SECONDS: String(handshakeSeconds),
    RPC_BODY_READ_TIMEOUT_SECONDS: String(bodySeconds),
  });
  url = stack.report.listeners.panel.url;
});
test.after(async () => {
  await stack?.stop();
});

/** Waits for every connection to be closed by the server, at most `ms`; answers how many were, and the slowest. */
async function closedWithin(connections: readonly RawHttp2[], ms: number): Promise<{ closed: number; slowestMs: number }> {
  const times = await Promise.all(connections.map((c) => Promise.race([c.closed, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref())])));
  const done = times.filter((t): t is number => t !== undefined);
  return { closed: done.length, slowestMs: Math.max(0, ...done) };
}

/** Runs `abuse` while measuring /healthz (median of 5) and RSS; prints the figure line. */
async function measured(name: string, abuse: () => Promise<string>) {
  const rssBefore = await stack.rssMiB();
  const during = stack.healthMs();
  const said = await abuse();
  const healthDuring = await during;
  const healthAfter = await stack.healthMs();
  const rssAfter = await stack.rssMiB();
  console.log(
    `abuse: ${name}: ${said}; /healthz ${healthDuring.toFixed(1)} ms during, ${healthAfter.toFixed(1)} ms after; RSS ${rssBefore.toFixed(0)} → ${rssAfter.toFixed(0)} MiB`,
  );
  assert.ok(stack.alive(), "the panel process is still running");
  assert.ok(healthDuring < 100, `/healthz during ${name} answered within 100 ms (${healthDuring.toFixed(1)} ms)`);
  assert.ok(healthAfter < 100, `/healthz after ${name} answered within 100 ms (${healthAfter.toFixed(1)} ms)`);
  assert.ok(rssAfter - rssBefore < 150, `memory stays bounded: RSS grew ${(rssAfter - rssBefore).toFixed(0)} MiB`);
}

test("more streams on one connection than it allows: refused, and the connection closed", async () => {
  await measured(`${20 * scale} connections opening 1,000 streams each`, async () => {
    const connections = await Promise.all(Array.from({ length: 20 * scale }, () => rawHttp2(url)));
    for (const c of connections) for (let i = 0; i < 1000; i++) c.headers(1 + 2 * i, postFields(url, path));
    const { closed, slowestMs } = await closedWithin(connections, 10_000);
    assert.is(closed, connections.length, "the server closed every such connection");
    return `all ${closed} closed by the server within ${slowestMs.toFixed(0)} ms`;
  });
});

test("rapid reset (open a stream, reset it, again and again): the connection is closed", async () => {
  await measured(`${10 * scale} connections opening and resetting 2,000 streams each`, async () => {
    const connections = await Promise.all(Array.from({ length: 10 * scale }, () => rawHttp2(url)));
    for (const c of connections) {
      for (let i = 0; i < 2000; i++) {
        c.headers(1 + 2 * i, postFields(url, path));
        c.reset(1 + 2 * i);
      }
    }
    const { closed, slowestMs } = await closedWithin(connections, 10_000);
    assert.is(closed, connections.length, "the server closed every such connection");
    return `all ${closed} closed by the server within ${slowestMs.toFixed(0)} ms`;
  });
});

test("slow headers: a header block never finished is closed within two ping intervals", async () => {
  await measured(`${200 * scale} connections with an unfinished header block`, async () => {
    // A client that leaves a header block open cannot answer a PING without breaking the protocol.
    const connections = await Promise.all(Array.from({ length: 200 * scale }, () => rawHttp2(url, { answerPings: false })));
    for (const c of connections) c.headers(1, postFields(url, path), { endHeaders: false });
    const { closed, slowestMs } = await closedWithin(connections, (pingSeconds * 2 + 3) * 1000);
    assert.is(closed, connections.length, "the server closed every such connection");
    return `all ${closed} closed within ${slowestMs.toFixed(0)} ms (ping every ${pingSeconds} s)`;
  });
});

test("slow bodies: a body that trickles is answered and its stream ended at the body timeout, whatever the client still sends", async () => {
  await measured(`${200 * scale} connections trickling a request body`, async () => {
    const connections = await Promise.all(Array.from({ length: 200 * scale }, () => rawHttp2(url)));
    for (const c of connections) c.headers(1, postFields(url, path));
    const trickle = setInterval(() => {
      for (const c of connections) if (!c.ended.has(1)) c.data(1, Buffer.from([0x0a]));
    }, 500);
    const deadline = Date.now() + (bodySeconds + 5) * 1000;
    while (connections.some((c) => !c.ended.has(1)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    clearInterval(trickle);
    const ended = connections.filter((c) => c.ended.has(1)).length;
    for (const c of connections) c.destroy();
    assert.is(ended, connections.length, "the server ended every trickling stream");
    return `all ${ended} streams ended by the server (body timeout ${bodySeconds} s)`;
  });
});

test("many connections that never speak: those without a TLS handshake and those without HTTP/2 are closed", async () => {
  await measured(`${500 * scale} TCP connections with no TLS handshake and ${500 * scale} TLS connections with no HTTP/2 preface`, async () => {
    const { port } = new URL(url);
    const started = performance.now();
    const silentTcp = Array.from({ length: 500 * scale }, () => {
      const socket = netConnect(Number(port), "127.0.0.1");
      socket.on("error", () => {});
      return new Promise<number>((resolve) => socket.once("close", () => resolve(performance.now() - started)));
    });
    const silentTls = await Promise.all(Array.from({ length: 500 * scale }, () => rawHttp2(url, { preface: false })));
    const tcpTimes = await Promise.race([
      Promise.all(silentTcp),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), (handshakeSeconds + 5) * 1000).unref()),
    ]);
    assert.ok(tcpTimes, `every connection without a TLS handshake was closed within ${handshakeSeconds + 5} s`);
    const tls = await closedWithin(silentTls, (pingSeconds * 2 + 5) * 1000);
    assert.is(tls.closed, silentTls.length, "every TLS connection that never sent the HTTP/2 preface was closed");
    return `no handshake: all closed within ${Math.max(...tcpTimes!).toFixed(0)} ms (handshake timeout ${handshakeSeconds} s); no preface: all closed within ${tls.slowestMs.toFixed(0)} ms`;
  });
});

test.run();
