/**
 * What one held command stream costs the server: N clients in another process each open a TLS +
 * HTTP/2 connection and hold `Subscribe` open; the server's RSS and JS heap (after a full GC) are
 * read before and after, with Subscribe served by connect's handler and on the held-stream path
 * (services/lib/held-stream.ts) — and, as floors, a TLS connection alone and an HTTP/2 stream
 * answered by hand. One after the other in the same run, each server in a fresh process (memory
 * a process freed is not returned to the system, so a second measurement in the same process
 * would reuse it).
 *
 *   npm run bench -- held-streams [--streams 2000] [--rounds 3] [--sync-accounts 0]
 *
 * `--sync-accounts N`: each connection first carries one Sync of an instance with N accounts (an
 * agent's first sync), then holds its stream: what a connection keeps of a large message it
 * carried (over TLS alone, as many bytes).
 */
import { execFileSync, fork } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createSecureServer } from "node:http2";
import type { AddressInfo, Server } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { createServer as createTlsServer } from "node:tls";
import { join } from "node:path";
import type { ConnectRouter } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { AgentService } from "../gen/myosicam/agent/v1/agent_pb.js";
import { createLogger } from "../services/lib/log.js";
import { createRequestContextInterceptor } from "../services/lib/request-context.js";
import { chooseApplicationProtocol, createServer } from "../services/lib/server.js";
import { loadTlsIdentity } from "../services/lib/tls.js";
import { stopAfter } from "./lib/deadline.js";
import { everydayServerOptions } from "../test/helpers/server-options.js";
import { owned } from "./lib/owned-children.js";
import { syncBody } from "./lib/sync-body.js";

stopAfter("held-streams", 10);

const flag = (name: string, fallback: number, least = 1) => {
  const at = process.argv.indexOf(`--${name}`);
  const value = at === -1 ? fallback : Number(process.argv[at + 1]);
  if (!Number.isInteger(value) || value < least) {
    console.error(`held-streams: --${name} takes a whole number of ${least} or more, got ${process.argv[at + 1] ?? "nothing"}`);
    process.exit(2);
  }
  return value;
};
const streams = flag("streams", 2000);
const rounds = flag("rounds", 3);
const syncAccounts = flag("sync-accounts", 0, 0);
const syncBytes = syncAccounts > 0 ? syncBody(syncAccounts).byteLength : 0;
const serving = process.argv.includes("--serve") ? process.argv[process.argv.indexOf("--serve") + 1] : undefined;

const log = createLogger({ level: "silent" });
const root = await mkdtemp(join(tmpdir(), "myosicam-bench-"));
const tls = await loadTlsIdentity({ dataDir: root });

/** The command stream as the panel holds it: a keepalive, then waiting until it ends. */
const routes = (router: ConnectRouter) =>
  router.service(AgentService, {
    async *subscribe(_req, ctx) {
      yield { message: { case: "keepalive", value: {} } };
      await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
      ctx.signal.throwIfAborted();
    },
    sync: () => ({}),
  });

const measured = () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("the measuring process needs --expose-gc");
  gc();
  gc();
  const { rss, heapUsed } = process.memoryUsage();
  return { rss, heapUsed };
};

/** Opens `count` held streams from a child process; answers once all have their first message, and a way to end them. */
async function holdStreams(url: string, count: number, kind: "tls" | "stream"): Promise<() => Promise<void>> {
  const child = owned(
    fork(join(import.meta.dirname, "lib/held-stream-clients.ts"), [url, String(count), tls.certFile, kind, String(syncAccounts)], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    }),
  );
  await new Promise<void>((resolve, reject) => {
    child.once("message", () => resolve());
    child.once("exit", (code) => reject(new Error(`the client process exited (${code}) before its streams were open`)));
  });
  return async () => {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill();
    await exited;
  };
}

/** What is measured: the two ways of serving Subscribe, and the floors under them. */
const modes = {
  tls: "a TLS connection alone",
  http2: "an HTTP/2 stream answered by hand",
  connect: "connect's handler",
  held: "the held-stream path",
} as const;
type Mode = keyof typeof modes;

/** A listening server of the mode; answers its URL and how to close it. */
async function serve(mode: Mode): Promise<{ url: string; close(): Promise<void> }> {
  const options = { cert: tls.cert, key: tls.key, minVersion: "TLSv1.3" as const };
  const listening = (server: Server) =>
    new Promise<{ url: string; close(): Promise<void> }>((resolve) =>
      server.listen(0, "127.0.0.1", () =>
        resolve({
          url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
          close: () => new Promise((closed) => server.close(() => closed())),
        }),
      ),
    );
  if (mode === "tls") {
    return listening(
      createTlsServer(options, (socket) => {
        socket.on("error", () => undefined);
        // Its first byte once the sync's bytes are in (at once without them).
        let unread = syncBytes;
        if (unread === 0) socket.write("\0");
        else
          socket.on("data", (chunk: Buffer) => {
            unread -= chunk.byteLength;
            if (unread === 0) socket.write("\0");
          });
      }),
    );
  }
  if (mode === "http2") {
    // ALPN by callback, as the panel's listeners choose it (a protocol list pins a 64 KiB pool slab per connection).
    const server = createSecureServer({ ...options, ALPNCallback: chooseApplicationProtocol });
    server.on("stream", (stream, headers) => {
      if (headers[":path"]?.endsWith("/Sync")) {
        stream.on("data", () => undefined);
        stream.on("end", () => {
          stream.respond({ ":status": 200, "content-type": "application/proto" });
          stream.end();
        });
        return;
      }
      stream.respond({ ":status": 200, "content-type": "application/connect+proto" });
      stream.write(Buffer.from([0, 0, 0, 0, 2, 0x0a, 0]));
    });
    return listening(server);
  }
  const { listen } = createServer({
    name: "panel",
    tls,
    routes,
    ...(mode === "held" ? { heldStreams: [AgentService.method.subscribe] } : {}),
    interceptors: [createRequestContextInterceptor(log, new Map()), createValidateInterceptor()],
    ...everydayServerOptions(log),
  });
  const server = await listen(0, "127.0.0.1");
  return { url: server.url, close: async () => void (await server.close(5_000)) };
}

async function costPerStream(mode: Mode) {
  const server = await serve(mode);
  const kind = mode === "tls" ? "tls" : "stream";
  try {
    // A first few streams warm the code paths up, so that what is measured is per stream.
    const endWarmUp = await holdStreams(server.url, 50, kind);
    const before = measured();
    const end = await holdStreams(server.url, streams, kind);
    const after = measured();
    await end();
    await endWarmUp();
    return { rss: (after.rss - before.rss) / streams / 1024, heap: (after.heapUsed - before.heapUsed) / streams / 1024 };
  } finally {
    await server.close();
  }
}

try {
  if (serving !== undefined) {
    // One measurement in this fresh process; the parent reads the line.
    if (!(serving in modes)) throw new Error(`--serve takes one of ${Object.keys(modes).join(", ")}`);
    console.log(JSON.stringify(await costPerStream(serving as Mode)));
  } else {
    console.log(
      `${streams} held Subscribe streams, each on its own TLS + HTTP/2 connection from another process${syncAccounts > 0 ? `, each connection carrying a Sync of ${syncAccounts} accounts (${(syncBytes / 1024).toFixed(1)} KiB) first` : ""} (load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")})`,
    );
    const measure = (mode: Mode) =>
      JSON.parse(
        execFileSync(
          process.execPath,
          ["--expose-gc", "--import", "tsx", import.meta.filename, "--serve", mode, "--streams", String(streams), "--sync-accounts", String(syncAccounts)],
          {
            encoding: "utf8",
            timeout: 300_000,
          },
        ).trim(),
      ) as { rss: number; heap: number };
    console.log("  KiB per connection, RSS / JS heap:");
    for (let round = 1; round <= rounds; round++) {
      const figures = Object.fromEntries((Object.keys(modes) as Mode[]).map((mode) => [mode, measure(mode)])) as Record<Mode, { rss: number; heap: number }>;
      const shown = (Object.keys(modes) as Mode[]).map((mode) => `${modes[mode]} ${figures[mode].rss.toFixed(1)} / ${figures[mode].heap.toFixed(1)}`);
      console.log(
        `  round ${round}: ${shown.join("; ")}; held ÷ connect: RSS ${(figures.held.rss / figures.connect.rss).toFixed(2)}×, heap ${(figures.held.heap / figures.connect.heap).toFixed(2)}×`,
      );
    }
  }
} finally {
  await rm(root, { recursive: true, force: true });
}
