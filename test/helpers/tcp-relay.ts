import { createConnection, createServer, type Server, type Socket } from "node:net";

/** A TCP relay on a loopback port to `targetPort` that a test can take down (connections refused, open ones cut) and bring back. */
export interface TcpRelay {
  port: number;
  /** Cuts every connection and refuses new ones (ECONNREFUSED), as a stopped server would. */
  down(): Promise<void>;
  /** Accepts connections again, on the same port. */
  up(): Promise<void>;
  /** Cuts every open connection, as a network failure would; new ones are still accepted. */
  cut(): void;
  stop(): Promise<void>;
}

export async function startTcpRelay(targetPort: number): Promise<TcpRelay> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      if (server) return resolve();
      server = createServer((inbound) => {
        const outbound = createConnection({ host: "127.0.0.1", port: targetPort });
        for (const s of [inbound, outbound]) {
          sockets.add(s);
          s.on("close", () => sockets.delete(s));
          s.on("error", () => {});
        }
        inbound.pipe(outbound).pipe(inbound);
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
  return { port, down: close, up: listen, cut, stop: close };
}
