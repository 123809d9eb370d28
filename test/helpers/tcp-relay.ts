import { createConnection, createServer, type Server, type Socket } from "node:net";

/**
 * How the relay treats traffic: `pass` forwards it; `blackhole` accepts connections and forwards
 * nothing either way, closing nothing (packets dropped, no RST); `latency` forwards each chunk
 * after a delay; `halfOpen` closes the target's side of every connection open at that moment while
 * the client's side stays open and silent (the client is never told); new connections pass.
 */
export type RelayMode = { kind: "pass" } | { kind: "blackhole" } | { kind: "latency"; ms: number } | { kind: "halfOpen" };

/** A TCP relay on a loopback port to `targetPort` that a test can take down, cut, and fault. */
export interface TcpRelay {
  port: number;
  /** Cuts every connection and refuses new ones (ECONNREFUSED), as a stopped server would. */
  down(): Promise<void>;
  /** Accepts connections again, on the same port. */
  up(): Promise<void>;
  /** Cuts every open connection, as a network failure would; new ones are still accepted. */
  cut(): void;
  /** From now on, open and new connections are treated as `mode` says. */
  fault(mode: RelayMode): void;
  /** Client connections accepted so far. */
  accepted(): number;
  stop(): Promise<void>;
}

interface Pair {
  inbound: Socket;
  outbound: Socket;
}

export async function startTcpRelay(targetPort: number): Promise<TcpRelay> {
  const sockets = new Set<Socket>();
  const pairs = new Set<Pair>();
  let mode: RelayMode = { kind: "pass" };
  let server: Server | undefined;
  let port = 0;
  let accepted = 0;
  /** Sockets of the connections made half-open: their client side is never told. */
  const halfOpened = new WeakSet<Socket>();

  /** Forwards `from` → `to` as the mode at the time of each chunk says. */
  const forward = (from: Socket, to: Socket) => {
    from.on("data", (chunk: Buffer) => {
      const now = mode;
      if (now.kind === "blackhole") return;
      // A half-open connection's client side goes nowhere; connections made since pass.
      if (now.kind === "halfOpen" && to.destroyed) return;
      if (now.kind === "latency") setTimeout(() => to.destroyed || to.write(chunk), now.ms).unref();
      else if (!to.destroyed) to.write(chunk);
    });
    // A close is passed on, but not through a black hole nor to the silent side of a half-open connection.
    from.on("close", () => {
      if (mode.kind !== "blackhole" && !halfOpened.has(from) && !halfOpened.has(to)) to.destroy();
    });
  };
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      if (server) return resolve();
      server = createServer((inbound) => {
        accepted++;
        const outbound = createConnection({ host: "127.0.0.1", port: targetPort });
        const pair = { inbound, outbound };
        pairs.add(pair);
        for (const s of [inbound, outbound]) {
          sockets.add(s);
          s.on("close", () => {
            sockets.delete(s);
            if (inbound.destroyed && outbound.destroyed) pairs.delete(pair);
          });
          s.on("error", () => {});
        }
        forward(inbound, outbound);
        forward(outbound, inbound);
      });
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        port = (server!.address() as { port: number }).port;
        resolve();
      });
    });
  const close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      if (!server) return resolve();
      server.close(() => resolve());
      server = undefined;
    });
  await listen();
  const cut = () => {
    for (const s of sockets) s.destroy();
  };
  const fault = (next: RelayMode) => {
    mode = next;
    // Half-open: the target sees its connections closed; the clients see nothing at all.
    if (next.kind === "halfOpen") {
      for (const pair of pairs) {
        halfOpened.add(pair.inbound);
        halfOpened.add(pair.outbound);
        pair.outbound.destroy();
      }
    }
  };
  return { port, down: close, up: listen, cut, fault, accepted: () => accepted, stop: close };
}
