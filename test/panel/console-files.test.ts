import { mkdir, rm, writeFile } from "node:fs/promises";
import { connect as http2Connect } from "node:http2";
import { join } from "node:path";
import { brotliCompressSync, brotliDecompressSync } from "node:zlib";
import type { ConnectRouter } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { RegistrationService } from "../../gen/myosicam/agent/v1/registration_pb.js";
import { consoleRoute, consoleSecurityPolicy } from "../../services/panel/console-files.js";
import { createServer, type RunningServer } from "../../services/lib/server.js";
import { loadTlsIdentity, type TlsIdentity } from "../../services/lib/tls.js";
import { makeTempDir } from "../helpers/cli.js";
import { captureLogs } from "../helpers/log-capture.js";

const test = suite("the panel serves the console: pages of the app for any path, hashed assets cached, the API untouched");

let dir: Awaited<ReturnType<typeof makeTempDir>>;
let dist: string;
let tls: TlsIdentity;
let server: RunningServer;
const index = '<!doctype html><html><head><script type="module" src="/assets/index-abc123.js"></script></head><body><div id="root"></div></body></html>';
const script = `console.log(${JSON.stringify("x".repeat(2000))});`;

async function get(path: string, headers: Record<string, string> = {}) {
  const session = http2Connect(server.url, { ca: tls.cert });
  try {
    return await new Promise<{ status: number; headers: Record<string, string>; body: Buffer }>((resolve, reject) => {
      const req = session.request({ ":path": path, ":method": "GET", ...headers });
      const chunks: Buffer[] = [];
      let head: Record<string, string> = {};
      req.on("response", (h) => (head = Object.fromEntries(Object.entries(h).map(([k, v]) => [k, String(v)]))));
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve({ status: Number(head[":status"]), headers: head, body: Buffer.concat(chunks) }));
      req.on("error", reject);
      req.end();
    });
  } finally {
    session.close();
  }
}

test.before(async () => {
  dir = await makeTempDir("console-files");
  dist = join(dir.path, "dist");
  await mkdir(join(dist, "assets"), { recursive: true });
  await writeFile(join(dist, "index.html"), index);
  await writeFile(join(dist, "assets", "index-abc123.js"), script);
  await writeFile(join(dir.path, "secret.txt"), "outside the bundle");
  tls = await loadTlsIdentity({ dataDir: dir.path });
  const routes = (router: ConnectRouter) =>
    router.service(RegistrationService, {
      register() {
        throw new Error("not called");
      },
    });
  const { listen } = createServer({
    name: "panel",
    tls,
    routes,
    interceptors: [],
    readiness: async () => ({ ready: true, checks: {} }),
    httpRoutes: [consoleRoute(dist)],
    log: captureLogs().log,
    readMaxBytes: 1 << 20,
    maxTimeoutMs: 60_000,
    bodyReadTimeoutMs: 10_000,
    pingIntervalMs: 60_000,
  });
  server = await listen(0, "127.0.0.1");
});

test.after(async () => {
  await server?.close(5_000);
  await dir?.remove();
});

test("a page path of the app answers index.html, not cached, with the content security policy", async () => {
  for (const path of ["/", "/servers/7b4c1c1e-0000-4000-8000-000000000000?range=24h", "/accounts"]) {
    const res = await get(path);
    assert.is(res.status, 200, path);
    assert.is(res.body.toString(), index);
    assert.is(res.headers["cache-control"], "no-cache");
    assert.is(res.headers["content-security-policy"], consoleSecurityPolicy);
    assert.match(res.headers["content-security-policy"]!, /script-src 'self'(;|$)/);
    assert.is(res.headers["x-frame-options"], "DENY");
  }
});

test("a hashed asset is cached for a year and sent compressed when the browser accepts it", async () => {
  const res = await get("/assets/index-abc123.js", { "accept-encoding": "gzip, deflate, br" });
  assert.is(res.status, 200);
  assert.is(res.headers["cache-control"], "public, max-age=31536000, immutable");
  assert.is(res.headers["content-encoding"], "br");
  assert.is(brotliDecompressSync(res.body).toString(), script);
  assert.ok(res.body.length < script.length / 10);
  const plain = await get("/assets/index-abc123.js");
  assert.is(plain.headers["content-encoding"], undefined);
  assert.is(plain.body.toString(), script);
});

test("the build's own compressed copy is sent when there is one (no compressing at run time)", async () => {
  await writeFile(join(dist, "assets", "pre-1.js"), script);
  await writeFile(join(dist, "assets", "pre-1.js.br"), brotliCompressSync(Buffer.from("the prebuilt copy")));
  const res = await get("/assets/pre-1.js", { "accept-encoding": "br" });
  assert.is(res.headers["content-encoding"], "br");
  assert.is(brotliDecompressSync(res.body).toString(), "the prebuilt copy");
});

test("a path that is not valid percent-encoding is a 400 in words", async () => {
  const res = await get("/servers/%E0%A4%A");
  assert.is(res.status, 400);
  assert.match(res.body.toString(), /not valid percent-encoding/);
});

test("an asset of an older build is a 404 that says to reload, not the page", async () => {
  const res = await get("/assets/index-old999.js");
  assert.is(res.status, 404);
  assert.match(res.body.toString(), /older version of the console: reload the page/);
});

test("API and agent paths are never the console: an unknown RPC stays a 404 in JSON", async () => {
  for (const path of ["/myosicam.panel.v1.NoSuchService/Nothing", "/install/agent/linux-x64"]) {
    const res = await get(path);
    assert.is(res.status, 404, path);
    assert.match(res.body.toString(), /"code":"not_found"/);
  }
});

test("a path climbing out of the bundle gets the page, never a file beside it", async () => {
  for (const path of ["/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt"]) {
    const res = await get(path);
    assert.not.ok(res.body.toString().includes("outside the bundle"), path);
  }
});

test("without a built bundle the answer is 503 with how to build it", async () => {
  await rm(dist, { recursive: true });
  const res = await get("/");
  assert.is(res.status, 503);
  assert.match(res.body.toString(), /npm run build:web/);
});

test.run();
