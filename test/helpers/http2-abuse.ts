import { connect as netConnect } from "node:net";
import * as assert from "uvu/assert";
import { postFields, type RawHttp2, rawHttp2 } from "./raw-http2.js";

/**
 * HTTP/2 abuse from clients that write frames by hand, against a panel listener: many streams on
 * one connection, open-and-reset, a header block never finished, bodies that trickle, and many
 * connections that never speak. Each scenario asserts that the server dealt with its offenders
 * (closed them, or ended their streams) and answers what it saw. The fault test
 * (test/faults/http2-abuse.test.ts) runs them for behaviour; the benchmark
 * (bench/http2-abuse.bench.ts) runs them to measure `/healthz` meanwhile.
 */
export interface AbuseScenario {
  /** What it does, e.g. "20 connections opening 1,000 streams each". */
  name: string;
  /** Runs it against `url` (the panel listener); answers what the server did, in words. */
  run(url: string): Promise<string>;
}

/** The limits the scenarios' server must run with, shortened so offenders are dealt with in seconds. */
export const abuseLimits = { pingSeconds: 2, handshakeSeconds: 3, bodySeconds: 3 } as const;

/** The settings that give `up` those limits. */
export const abuseSettings: Record<string, string> = {
  HTTP2_PING_INTERVAL_SECONDS: String(abuseLimits.pingSeconds),
  TLS_HANDSHAKE_TIMEOUT_SECONDS: String(abuseLimits.handshakeSeconds),
  RPC_BODY_READ_TIMEOUT_SECONDS: String(abuseLimits.bodySeconds),
};

/** A path whose body the server must read before it can answer (registration is unsigned). */
const path = "/myosicam.agent.v1.RegistrationService/Register";

/** Waits for every connection to be closed by the server, at most `ms`; answers how many were, and the slowest. */
async function closedWithin(connections: readonly RawHttp2[], ms: number): Promise<{ closed: number; slowestMs: number }> {
  const times = await Promise.all(connections.map((c) => Promise.race([c.closed, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref())])));
  const done = times.filter((t): t is number => t !== undefined);
  return { closed: done.length, slowestMs: Math.max(0, ...done) };
}

/** The five scenarios, each `scale` times its usual number of connections. */
export function abuseScenarios(scale: number): Record<"manyStreams" | "rapidReset" | "slowHeaders" | "slowBodies" | "silent", AbuseScenario> {
  const { pingSeconds, handshakeSeconds, bodySeconds } = abuseLimits;
  return {
    manyStreams: {
      name: `${20 * scale} connections opening 1,000 streams each`,
      async run(url) {
        const connections = await Promise.all(Array.from({ length: 20 * scale }, () => rawHttp2(url)));
        for (const c of connections) for (let i = 0; i < 1000; i++) c.headers(1 + 2 * i, postFields(url, path));
        const { closed, slowestMs } = await closedWithin(connections, 10_000);
        assert.is(closed, connections.length, "the server closed every such connection");
        return `all ${closed} closed by the server within ${slowestMs.toFixed(0)} ms`;
      },
    },
    rapidReset: {
      name: `${10 * scale} connections opening and resetting 2,000 streams each`,
      async run(url) {
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
      },
    },
    slowHeaders: {
      name: `${200 * scale} connections with an unfinished header block`,
      async run(url) {
        // A client that leaves a header block open cannot answer a PING without breaking the protocol.
        const connections = await Promise.all(Array.from({ length: 200 * scale }, () => rawHttp2(url, { answerPings: false })));
        for (const c of connections) c.headers(1, postFields(url, path), { endHeaders: false });
        const { closed, slowestMs } = await closedWithin(connections, (pingSeconds * 2 + 3) * 1000);
        assert.is(closed, connections.length, "the server closed every such connection");
        return `all ${closed} closed within ${slowestMs.toFixed(0)} ms (ping every ${pingSeconds} s)`;
      },
    },
    slowBodies: {
      name: `${200 * scale} connections trickling a request body`,
      async run(url) {
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
      },
    },
    silent: {
      name: `${500 * scale} TCP connections with no TLS handshake and ${500 * scale} TLS connections with no HTTP/2 preface`,
      async run(url) {
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
      },
    },
  };
}
