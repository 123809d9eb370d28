import { execFile } from "node:child_process";
import { connect as http2Connect, constants as http2Constants, createSecureServer } from "node:http2";
import type { AddressInfo } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { clockSkewSeconds } from "../../agent/timing.js";
import { AgentService, SubscribeRequestSchema } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { RegistrationService } from "../../gen/myosicam/agent/v1/registration_pb.js";
import { signingHeaders } from "../../services/lib/hmac/canonical.js";
import { LicenseService } from "../../gen/myosicam/license/v1/license_pb.js";
import { migrationsFor } from "../../services/host.js";
import { createDatabase, migrateToLatest, type Knex } from "../../services/lib/db.js";
import { purgeNonces, recordNonces, recordRefusal } from "../../services/lib/hmac/nonce-store.js";
import { createSignedTransport, createSigningHttpClient, createUnsignedTransport } from "../../services/lib/hmac/signing-client.js";
import type { RunningServer } from "../../services/lib/server.js";
import { loadTlsIdentity, type TlsIdentity } from "../../services/lib/tls.js";
import { makeTempDir } from "../helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/database.js";
import { captureLogs } from "../helpers/log-capture.js";
import { send, signedCall, startSignedServer, type TestTrust } from "../helpers/signed-server.js";

const repo = resolve(import.meta.dirname, "../..");
const test = suite("HMAC-signed requests against a real HTTPS server and PostgreSQL");

const secret = "c2a7d3f1b4e5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff";
const catalog = "/myosicam.license.v1.LicenseService/GetPlanCatalog";
const logs = captureLogs();
const trust: TestTrust = { callers: new Map(), clock: { offsetSeconds: 0 }, refusals: [] };
let database: TestDatabase;
let db: Knex;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
let tls: TlsIdentity;
let server: RunningServer & { heldCalls(): number };
let replica: RunningServer;

const lastReason = () => trust.refusals.at(-1)?.reason;

test.before(async () => {
  dir = await makeTempDir("hmac");
  tls = await loadTlsIdentity({ dataDir: dir.path });
  database = await createTestDatabase("hmac");
  db = createDatabase(database.url, logs.log);
  await migrateToLatest(db, migrationsFor("admin"));
  trust.callers.set("panel", {
    id: "panel",
    active: true,
    secrets: [secret],
    allowedProcedures: ["/myosicam.license.v1.LicenseService/*", "/myosicam.agent.v1.AgentService/Subscribe"],
  });
  trust.callers.set("public_pricing", { id: "public_pricing", active: true, secrets: ["pricing-secret"], allowedProcedures: [catalog] });
  server = await startSignedServer(db, tls, logs.log, trust);
  replica = await startSignedServer(db, tls, logs.log, trust);
});
test.after(async () => {
  await server.close(5000);
  await replica.close(5000);
  await db.destroy();
  await database.drop();
  await dir.remove();
});

test("a signed unary call through the signing transport is accepted and the handler sees the caller", async () => {
  const client = createClient(LicenseService, createSignedTransport({ baseUrl: server.url, credentials: { callerId: "panel", secret }, ca: tls.cert }));
  const res = await client.getPlanCatalog({});
  assert.is(res.plans[0]?.name, "panel");
});

test("a signed server-streaming call is accepted over HTTP/2 and HTTP/1.1", async () => {
  for (const httpVersion of ["2", "1.1"] as const) {
    const client = createClient(
      AgentService,
      createSignedTransport({ baseUrl: server.url, credentials: { callerId: "panel", secret }, ca: tls.cert, httpVersion }),
    );
    const received = [];
    for await (const m of client.subscribe({ agentVersion: "0.1.0" }, { timeoutMs: 0 })) received.push(m.message.case);
    assert.equal(received, ["keepalive"], `HTTP/${httpVersion}`);
  }
});

/** A Subscribe request as one Connect streaming frame. */
const subscribeFrame = (agentVersion: string) => {
  const message = toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { agentVersion }));
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
};

test("the agent's command stream on the held-stream path: signed binary Subscribe accepted; its body changed after signing, or sent again, refused", async () => {
  const procedure = "/myosicam.agent.v1.AgentService/Subscribe";
  const body = subscribeFrame;
  const headers = signingHeaders({ callerId: "panel", secret, procedure, body: body("0.1.0"), nowSeconds: Date.now() / 1000 });
  const call = async (bytes: Uint8Array) => {
    const session = http2Connect(server.url, { ca: tls.cert });
    try {
      return await new Promise<string>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": procedure, "content-type": "application/connect+proto", ...headers });
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => resolve(Buffer.concat(chunks).toString("latin1")));
        stream.on("error", reject);
        stream.end(bytes);
      });
    } finally {
      session.close();
    }
  };
  const servedBefore = server.heldCalls();
  const accepted = await call(body("0.1.0"));
  assert.match(accepted, /^\0/, "a keepalive first");
  assert.match(accepted, /\{\}$/, "and a clean end");
  assert.match(await call(body("0.1.1")), /request signature rejected/);
  assert.is(lastReason(), "bad_signature");
  assert.match(await call(body("0.1.0")), /request signature rejected/);
  assert.is(lastReason(), "replay");
  assert.is(server.heldCalls() - servedBefore, 3, "all three took the held-stream path");
});

test("a body cut short (a call given up under way) is refused by HTTP/2 itself when its length was sent, never taken for a forgery", async () => {
  const procedure = "/myosicam.agent.v1.AgentService/Subscribe";
  const full = subscribeFrame("0.1.0");
  // Node ends a call given up before its body went out with END_STREAM, then resets it.
  const cutShort = async (extraHeaders: Record<string, string>) => {
    const headers = signingHeaders({ callerId: "panel", secret, procedure, body: full, nowSeconds: Date.now() / 1000 });
    const session = http2Connect(server.url, { ca: tls.cert });
    try {
      return await new Promise<number>((resolve) => {
        const stream = session.request({ ":method": "POST", ":path": procedure, "content-type": "application/connect+proto", ...headers, ...extraHeaders });
        stream.on("data", () => {});
        stream.on("error", () => {});
        stream.on("close", () => resolve(stream.rstCode));
        stream.end();
      });
    } finally {
      session.close();
    }
  };
  const refusalsBefore = trust.refusals.length;
  assert.is(await cutShort({ "content-length": String(full.length) }), http2Constants.NGHTTP2_PROTOCOL_ERROR);
  assert.is(trust.refusals.length, refusalsBefore, "not refused as a forgery, not audited");
  // Without the length the cut body looks complete: what the signing client's length prevents.
  await cutShort({});
  assert.is(lastReason(), "bad_signature");
});

test("the signing client sends every body's length with its signature", async () => {
  const seen: Array<{ length: string | null; bytes: number }> = [];
  const client = createSigningHttpClient(
    async (req) => {
      let bytes = 0;
      for await (const chunk of req.body ?? []) bytes += chunk.length;
      seen.push({ length: req.header.get("content-length"), bytes });
      throw new Error("not sent");
    },
    () => ({ callerId: "panel", secret }),
  );
  for (const body of [Buffer.alloc(0), subscribeFrame("0.1.0"), Buffer.alloc(70_000, 1)]) {
    const request = {
      url: `${server.url}${catalog}`,
      method: "POST",
      header: new Headers(),
      body: (async function* () {
        yield body.subarray(0, Math.ceil(body.length / 2));
        yield body.subarray(Math.ceil(body.length / 2));
      })(),
      signal: new AbortController().signal,
    };
    await client(request as never).catch(() => {});
  }
  assert.equal(seen, [
    { length: "0", bytes: 0 },
    { length: String(subscribeFrame("0.1.0").length), bytes: subscribeFrame("0.1.0").length },
    { length: "70000", bytes: 70_000 },
  ]);
});

test("the unsigned transport (an agent's registration) sends each body whole with its length too", async () => {
  const seen: Array<{ length: unknown; bytes: number }> = [];
  const plain = createSecureServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    let bytes = 0;
    req.on("data", (c: Buffer) => (bytes += c.length));
    req.on("end", () => {
      seen.push({ length: req.headers["content-length"], bytes });
      res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify({ code: "unavailable", message: "not here" }));
    });
  });
  await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", resolve));
  try {
    const { port } = plain.address() as AddressInfo;
    const client = createClient(RegistrationService, createUnsignedTransport({ baseUrl: `https://127.0.0.1:${port}`, ca: tls.cert }));
    for (const hostname of ["a", "b".repeat(5000)]) {
      await client.register({ installToken: "mit_x", agentId: "7c2f8b2e-1c7d-4a51-9d59-3b1c9e0f4a11", hostname }).catch(() => {});
    }
  } finally {
    await new Promise((resolve) => plain.close(resolve));
  }
  assert.is(seen.length, 2);
  for (const s of seen) assert.is(s.length, String(s.bytes));
  assert.ok(seen[1]!.bytes > 5000);
});

test("a raw signed JSON call is accepted", async () => {
  const res = await send(server.url, tls.cert, signedCall("panel", secret, catalog, "{}"));
  assert.is(res.status, 200, JSON.stringify(res.body));
});

test("a changed body is refused as bad_signature", async () => {
  const call = signedCall("panel", secret, catalog, "{}");
  const res = await send(server.url, tls.cert, { ...call, body: "{ }" });
  assert.is(res.status, 401);
  assert.is(res.body.code, "unauthenticated");
  assert.is(res.body.message, "request signature rejected");
  assert.is(lastReason(), "bad_signature");
});

test("a signature made for another procedure is refused", async () => {
  const call = signedCall("panel", secret, "/myosicam.license.v1.LicenseService/ReportUsage", "{}");
  const res = await send(server.url, tls.cert, { ...call, procedure: catalog });
  assert.is(res.status, 401);
  assert.is(lastReason(), "bad_signature");
});

test("a wrong secret is refused; an unknown caller is refused", async () => {
  assert.is((await send(server.url, tls.cert, signedCall("panel", "not-the-secret", catalog, "{}"))).status, 401);
  assert.is(lastReason(), "bad_signature");
  assert.is((await send(server.url, tls.cert, signedCall("stranger", secret, catalog, "{}"))).status, 401);
  assert.is(lastReason(), "unknown_caller");
});

test("missing or ill-formed headers are refused as malformed, and GET is refused", async () => {
  const call = signedCall("panel", secret, catalog, "{}");
  assert.is((await send(server.url, tls.cert, { ...call, headers: {} })).status, 401);
  assert.is(lastReason(), "malformed");
  assert.is((await send(server.url, tls.cert, { ...call, headers: { ...call.headers, "x-nonce": "XYZ" } })).status, 401);
  assert.is(lastReason(), "malformed");
  const get = await send(server.url, tls.cert, { ...call, method: "GET", procedure: `${catalog}?connect=v1&encoding=json&message=%7B%7D` });
  assert.ok(get.status >= 400, String(get.status));
});

test("a caller set inactive is refused on its very next call, with no restart", async () => {
  assert.is((await send(server.url, tls.cert, signedCall("public_pricing", "pricing-secret", catalog, "{}"))).status, 200);
  trust.callers.get("public_pricing")!.active = false;
  assert.is((await send(server.url, tls.cert, signedCall("public_pricing", "pricing-secret", catalog, "{}"))).status, 401);
  assert.is(lastReason(), "inactive_caller");
  trust.callers.get("public_pricing")!.active = true;
});

test("a method outside the caller's allow-list is refused as forbidden_method", async () => {
  const res = await send(server.url, tls.cert, signedCall("public_pricing", "pricing-secret", "/myosicam.license.v1.LicenseService/ReportUsage", "{}"));
  assert.is(res.status, 401);
  assert.is(lastReason(), "forbidden_method");
});

test("timestamps 301 s off are refused even with a valid signature; 299 s off are accepted", async () => {
  // The server's clock stands still for this test: on a slow machine the boundary must not move.
  const now = Math.floor(Date.now() / 1000);
  trust.clock.stoppedAt = now;
  try {
    for (const [offset, status] of [
      [301, 401],
      [-301, 401],
      [299, 200],
      [-299, 200],
    ] as const) {
      const res = await send(server.url, tls.cert, signedCall("panel", secret, catalog, "{}", now + offset));
      assert.is(res.status, status, `offset ${offset}`);
      if (status === 401) assert.is(lastReason(), "skew");
    }
  } finally {
    trust.clock.stoppedAt = undefined;
  }
});

test("a refusal's clock skew is measured from the time the call was signed with, so a clock put right while it was under way still shows it", async () => {
  // Signed 10 minutes behind, answered by a clock already right: what an agent sees when NTP steps
  // its clock between signing a heartbeat and reading the refusal.
  const behind = createSignedTransport({
    baseUrl: server.url,
    credentials: { callerId: "panel", secret },
    ca: tls.cert,
    nowSeconds: () => Date.now() / 1000 - 600,
  });
  const error = await createClient(LicenseService, behind)
    .getPlanCatalog({})
    .then(
      () => undefined,
      (err: unknown) => ConnectError.from(err),
    );
  assert.is(error?.code, Code.Unauthenticated);
  assert.is(lastReason(), "skew");
  const skew = clockSkewSeconds(error!.metadata);
  assert.ok(skew !== undefined && skew <= -598 && skew >= -602, `about 600 s behind, got ${skew}`);
});

test("a replayed request is refused even with every header identical", async () => {
  const call = signedCall("panel", secret, catalog, "{}");
  assert.is((await send(server.url, tls.cert, call)).status, 200);
  assert.is((await send(server.url, tls.cert, call)).status, 401);
  assert.is(lastReason(), "replay");
});

test("the same signed request sent 100 times at once is accepted exactly once", async () => {
  const call = signedCall("panel", secret, catalog, "{}");
  const results = await Promise.all(Array.from({ length: 100 }, () => send(server.url, tls.cert, call)));
  assert.is(results.filter((r) => r.status === 200).length, 1);
  assert.is(results.filter((r) => r.status === 401).length, 99);
});

test("a request accepted by one server is refused as a replay by another sharing the database", async () => {
  const call = signedCall("panel", secret, catalog, "{}");
  assert.is((await send(server.url, tls.cert, call)).status, 200);
  assert.is((await send(replica.url, tls.cert, call)).status, 401);
  assert.is(lastReason(), "replay");
});

test("an unsigned malformed request is refused as unauthenticated before validation", async () => {
  const res = await send(server.url, tls.cert, { procedure: "/myosicam.license.v1.LicenseService/ValidateLicense", body: '{"licenseKey":"x"}', headers: {} });
  assert.is(res.body.code, "unauthenticated");
});

test("the shell reference signer's request is accepted once and refused when sent again", async () => {
  const sh = (nonce?: string) =>
    promisify(execFile)("sh", [join(repo, "docs/examples/sign-request.sh"), catalog, "{}"], {
      env: {
        PATH: process.env.PATH,
        MYOSICAM_URL: server.url,
        MYOSICAM_CALLER_ID: "panel",
        MYOSICAM_SECRET: secret,
        MYOSICAM_CACERT: tls.certFile,
        MYOSICAM_TIMESTAMP: String(Math.floor(Date.now() / 1000)),
        ...(nonce ? { MYOSICAM_NONCE: nonce } : {}),
      },
    });
  const first = await sh("abcdefabcdefabcdefabcdefabcdef01");
  assert.match(first.stdout, /"name":"panel"/);
  const again = await sh("abcdefabcdefabcdefabcdefabcdef01").then(
    () => "accepted",
    (err: { stdout?: string }) => err.stdout ?? "refused",
  );
  assert.match(again, /unauthenticated/);
});

test("nonces recorded together: a nonce twice in one batch is new once, one seen before is not new", async () => {
  const seen = await recordNonces(db, [{ callerId: "batch", nonce: "n-seen" }]);
  assert.equal(seen, [true]);
  const batch = await recordNonces(db, [
    { callerId: "batch", nonce: "n-1" },
    { callerId: "batch", nonce: "n-seen" },
    { callerId: "batch", nonce: "n-1" },
    { callerId: "other", nonce: "n-1" },
  ]);
  assert.equal(batch, [true, false, false, true]);
});

test("purging removes nonces older than the cut-off and keeps recent ones", async () => {
  await db("hmac_nonces").insert({ caller_id: "panel", nonce: "f".repeat(32), seen_at: db.raw("now() - interval '11 minutes'") });
  const recent = await db("hmac_nonces").where("seen_at", ">", db.raw("now() - interval '1 minute'")).count({ n: "*" });
  const purged = await purgeNonces(db, 600);
  assert.is(purged, 1);
  const after = await db("hmac_nonces").count({ n: "*" });
  assert.is(Number(after[0]!.n), Number(recent[0]!.n), "recent nonces stay");
});

test("refusals are logged with reason and request id, never the signature or secret", async () => {
  const call = signedCall("panel", "wrong-secret-canary", catalog, "{}");
  await send(server.url, tls.cert, { ...call, headers: { ...call.headers, "x-request-id": "hmac-log-1" } });
  const line = logs.lines().find((l) => l.requestId === "hmac-log-1" && l.msg === "signed request refused");
  assert.ok(line, "a refusal line with the request id");
  assert.is(line.reason, "bad_signature");
  assert.not.ok(logs.text().includes(call.headers["x-signature"]!), "signature in logs");
  assert.not.ok(logs.text().includes(secret), "secret in logs");
  assert.not.ok(logs.text().includes("wrong-secret-canary"), "attempted secret in logs");
});

test("a signed request with a query string is refused as query_string: the signature does not cover it", async () => {
  const call = signedCall("panel", secret, catalog, "{}");
  const res = await send(server.url, tls.cert, { ...call, procedure: `${catalog}?plan=free` });
  assert.is(res.status, 401);
  assert.is(lastReason(), "query_string");
});

test("an X-Timestamp with a sign or a leading zero is refused as malformed", async () => {
  const call = signedCall("panel", secret, catalog, "{}");
  for (const timestamp of [`+${call.headers["x-timestamp"]}`, `0${call.headers["x-timestamp"]}`, `${call.headers["x-timestamp"]}.0`]) {
    const res = await send(server.url, tls.cert, { ...call, headers: { ...call.headers, "x-timestamp": timestamp } });
    assert.is(res.status, 401, timestamp);
    assert.is(lastReason(), "malformed", timestamp);
  }
});

test("identical refusals within a minute count on one audit row instead of one row each", async () => {
  const event = { reason: "bad_signature", callerId: "flood", procedure: catalog, requestId: "r", peer: "192.0.2.7" };
  await Promise.all(Array.from({ length: 10 }, () => recordRefusal(db, event)));
  for (let i = 0; i < 40; i++) await recordRefusal(db, event);
  await recordRefusal(db, { ...event, reason: "replay" });
  const rows = await db("hmac_refusals").where({ caller_id: "flood" }).orderBy("id");
  const total = rows.reduce((n: number, r: { repeats: number }) => n + 1 + r.repeats, 0);
  assert.is(total, 51, "every refusal is counted");
  assert.ok(rows.length <= 11, `${rows.length} rows for 51 refusals`);
  assert.is(rows.at(-1).reason, "replay");
});

test.run();
