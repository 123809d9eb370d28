/**
 * The operator API under an operator's load (`npm run bench -- operator-api`):
 *
 * 1. An authenticated list of 10,000 servers, signed as an API client over HTTPS/2: the first
 *    page, and a filtered page (status, tag and free text), as a console's server list asks them.
 * 2. FleetService.WatchEvents with 200 open watchers (in another process, each its own signed
 *    HTTP/2 connection) and a burst of 1,000 events (alerts written by 20 statements of 50): the
 *    latency of every event to every watcher, from the moment its change was written (the
 *    event's `at`) to its arrival, p50 and p99 (target p99 ≤ 200 ms).
 *
 * Everything is bounded: each phase has a deadline and the run ends by itself, with a message,
 * when something hangs.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createClient } from "@connectrpc/connect";
import { ServerService, ServerStatus } from "../gen/myosicam/panel/v1/server_pb.js";
import { localCredentialFile, readCliCredential } from "../services/lib/cli-credential.js";
import { createSignedTransport } from "../services/lib/hmac/signing-client.js";
import { startBenchPanel } from "./lib/panel.js";
import { owned } from "./lib/owned-children.js";

const servers = 10_000;
const watchers = 200;
const burst = 1_000;
const runDeadlineMs = 10 * 60_000;

const hardStop = setTimeout(() => {
  console.error(`operator-api: did not finish within ${runDeadlineMs / 60_000} minutes; stopping`);
  process.exit(1);
}, runDeadlineMs);
hardStop.unref();

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
const ms = (n: number) => `${n.toFixed(1)} ms`;

const panel = await startBenchPanel();
try {
  const credential = (await readCliCredential(localCredentialFile(panel.dataDir)))!;
  const transport = () =>
    createSignedTransport({
      baseUrl: panel.url,
      credentials: { callerId: credential.clientId, secret: credential.secret },
      ca: panel.ca,
      defaultTimeoutMs: 60_000,
    });

  // 10,000 servers in a realistic mix of statuses and tags, written in bulk.
  const statuses = ["online", "online", "online", "online", "unreachable", "pending", "new", "revoked"];
  for (let i = 0; i < servers; i += 1000) {
    await panel.db("servers").insert(
      Array.from({ length: 1000 }, (_, j) => {
        const n = i + j;
        return {
          id: crypto.randomUUID(),
          name: `srv-${String(n).padStart(5, "0")}`,
          status: statuses[n % statuses.length],
          hostname: `host-${n}.example.net`,
          seen_ip: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`,
          tags: [`region-${n % 10}`, n % 3 === 0 ? "prod" : "test"],
          created_by: "bench",
        };
      }),
    );
  }
  await panel.db.raw("analyze servers");
  const list = createClient(ServerService, transport());
  const timeCalls = async (label: string, fn: () => Promise<unknown>, runs = 50) => {
    await fn();
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      await fn();
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    console.log(`${label}: p50 ${ms(percentile(times, 50))}, p99 ${ms(percentile(times, 99))} (${runs} calls, signed, HTTPS/2)`);
  };
  const first = await list.listServers({ pageSize: 50 });
  console.log(`list of ${first.total} servers`);
  await timeCalls("first page of 50", () => list.listServers({ pageSize: 50 }));
  const filter = { statuses: [ServerStatus.ONLINE], tags: ["prod", "region-3"], query: "host-1" };
  const filtered = await list.listServers({ filter, pageSize: 50 });
  console.log(`filtered (online, tags prod+region-3, text "host-1"): ${filtered.total} match`);
  await timeCalls("filtered page of 50", () => list.listServers({ filter, pageSize: 50 }));
  await timeCalls("counts per status", () => list.countServers({}));

  // 200 watchers, each on its own connection, as 200 console tabs would be, in a process of their own.
  const serverIds = (await panel.db("servers").where({ status: "online" }).limit(burst).select("id")).map((r: { id: string }) => r.id);
  const child = owned(
    spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "lib/fleet-watchers.ts")], {
      env: {
        ...process.env,
        BENCH_URL: panel.url,
        BENCH_CA: panel.ca,
        BENCH_CLIENT_ID: credential.clientId,
        BENCH_SECRET: credential.secret,
        WATCHERS: String(watchers),
        EXPECT: String(burst),
      },
      stdio: ["ignore", "pipe", "inherit"],
    }),
  );
  try {
    const lines = createInterface({ input: child.stdout! });
    const nextLine = (what: string, limitMs: number) =>
      new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${what} did not happen within ${limitMs / 1000} s`)), limitMs);
        lines.once("line", (line) => {
          clearTimeout(timer);
          resolve(line);
        });
        child.once("exit", (code) => reject(new Error(`the watchers' process exited (${code}) before ${what}`)));
      });
    await nextLine(`${watchers} watchers opening`, 120_000);
    const started = performance.now();
    const result = nextLine(`${watchers * burst} deliveries`, 180_000);
    for (let i = 0; i < burst; i += 50) {
      await panel.db("alerts").insert(serverIds.slice(i, i + 50).map((id) => ({ server_id: id, kind: "server_unreachable", message: "bench" })));
    }
    const written = performance.now() - started;
    const figures = JSON.parse(await result) as { deliveries: number; p50: number; p99: number; max: number };
    const all = performance.now() - started;
    console.log(
      `WatchEvents, ${watchers} watchers (another process), a burst of ${burst} events written in ${ms(written)}: ` +
        `all ${figures.deliveries} deliveries in ${ms(all)}; per event p50 ${ms(figures.p50)}, p99 ${ms(figures.p99)}, max ${ms(figures.max)} (target p99 ≤ 200 ms)`,
    );
  } finally {
    // It exits by itself once it reported; a hung one is ended.
    const exited = new Promise((resolve) => (child.exitCode !== null ? resolve(undefined) : child.once("exit", resolve)));
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    child.kill("SIGKILL");
  }
} finally {
  await panel.stop();
}
