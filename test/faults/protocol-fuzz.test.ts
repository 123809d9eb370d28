import { randomInt } from "node:crypto";
import { type ClientHttp2Session, connect as http2Connect, constants as http2 } from "node:http2";
import type { DescMethod } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AdminService } from "../../gen/myosicam/admin/v1/admin_pb.js";
import { RegistrationService } from "../../gen/myosicam/agent/v1/registration_pb.js";
import { serviceRegistry } from "../../services/index.js";
import { localCredentialFile, readCliCredential } from "../../services/lib/cli-credential.js";
import { signingHeaders } from "../../services/lib/hmac/canonical.js";
import { createConnectTransport } from "@connectrpc/connect-node";
import { fuzzRuns } from "../helpers/fault-mode.js";
import { enrollOnUp, settingsFile, startUpProcess, type UpProcess } from "../helpers/up-process.js";
import { envelope, mutateBinary, mutateJson, randomEncodedMessage, seededRandom } from "../helpers/message-fuzz.js";

/**
 * Every RPC of both listeners (panel and admin) of a real `myosicam up`, called with random
 * messages of its input type, mutated (binary and JSON), and signed correctly as the caller each
 * service expects, so the cases reach the handlers rather than stop at the signature check.
 * Short mode 10,000 cases; FAULTS_LONG=1 1,000,000; FUZZ_RUNS=n any number; FUZZ_SEED=n repeats a run.
 */
const test = suite("protocol fuzzing of every RPC on both listeners");

const cases = fuzzRuns(10_000, 1_000_000);
const seed = Number(process.env.FUZZ_SEED ?? randomInt(2 ** 31));
const concurrency = 8;
/** A call with no answer (not even headers) after this long is a hang. */
const hangMs = 20_000;
/** How long a stream that opened runs: its deadline, sent with it. */
const streamReadMs = 300;

let stack: UpProcess;

/** How a call is authenticated: HMAC as a caller, a bearer session, or nothing. */
type Credential = { kind: "hmac"; callerId: string; secret: string } | { kind: "bearer"; token: string } | { kind: "none" };

interface Target {
  listener: "panel" | "admin";
  method: DescMethod;
  path: string;
  credential: Credential;
}

const targets: Target[] = [];

test.before(async () => {
  try {
    await setUp();
  } catch (err) {
    // uvu does not print a failed hook's error (nor a ConnectError's): say it here.
    console.error(`setting up the fuzz failed: ${err instanceof Error ? err.stack : String(err)}`);
    throw new Error(String(err));
  }
});

async function setUp() {
  // Fuzzed registrations fail by the thousand from one address: the limit is not what is tested here.
  // A read limit of 1 MiB, so that some cases (2 MiB bodies) go past it.
  stack = await startUpProcess("fuzz", { REGISTRATION_FAILURES_PER_MINUTE: "100000", RPC_READ_MAX_BYTES: String(1024 * 1024) }, async (cli) => {
    // An admin operator before the stack starts, so AdminService's methods can be reached with a session.
    const created = await cli(["admin", "operator", "create", "--email", "fuzz@example.com"], "fuzz-password-1234\n");
    assert.is(created.code, 0, created.stderr);
  });
  const { report, ca } = stack;

  const client = (await readCliCredential(localCredentialFile(report.dataDir)))!;
  const apiClient: Credential = { kind: "hmac", callerId: client.clientId, secret: client.secret };
  const settings = await settingsFile(stack.configFile);
  const panelCaller: Credential = { kind: "hmac", callerId: settings.PANEL_CALLER_ID ?? "panel", secret: settings.PANEL_CALLER_SECRET! };
  assert.ok(settings.PANEL_CALLER_SECRET, "up wrote the panel's caller secret into the configuration file");

  // An enrolled, approved agent, so AgentService's methods are signed as an agent.
  const enrolled = await enrollOnUp(stack, "fuzz-agent");
  const agent: Credential = { kind: "hmac", callerId: enrolled.id, secret: enrolled.token };

  const login = await createClient(AdminService, createConnectTransport({ baseUrl: report.listeners.admin.url, httpVersion: "2", nodeOptions: { ca } })).login({
    email: "fuzz@example.com",
    password: "fuzz-password-1234",
  });
  const adminSession: Credential = { kind: "bearer", token: login.sessionToken };

  const credentialOf = (typeName: string): Credential => {
    if (typeName === RegistrationService.typeName) return { kind: "none" };
    if (typeName === "myosicam.agent.v1.AgentService") return agent;
    if (typeName === AdminService.typeName) return adminSession;
    if (typeName === "myosicam.license.v1.LicenseService") return panelCaller;
    return apiClient;
  };
  for (const listener of ["panel", "admin"] as const) {
    for (const module of serviceRegistry.filter((s) => s.listener === listener)) {
      for (const service of module.descriptors) {
        for (const method of service.methods) {
          targets.push({ listener, method, path: `/${service.typeName}/${method.name}`, credential: credentialOf(service.typeName) });
        }
      }
    }
  }
}

test.after(async () => {
  await stack?.stop();
});

interface Outcome {
  /** The Connect code, "ok", or what happened instead (hang, reset). */
  code: string;
  message?: string;
}

/** Reads the code out of a Connect unary error body or a stream's end message. */
function codeOf(status: number, contentType: string, body: Buffer, streaming: boolean): Outcome {
  if (!streaming || !contentType.startsWith("application/connect+")) {
    if (status === 200) return { code: "ok" };
    try {
      const parsed = JSON.parse(body.toString("utf8")) as { code?: string; message?: string };
      return { code: parsed.code ?? `http ${status}`, message: parsed.message };
    } catch {
      return { code: `http ${status}`, message: body.toString("utf8").slice(0, 200) };
    }
  }
  // Envelopes: flags (1 byte), length (4 bytes), data; the end message has flag 0x02 and is JSON.
  for (let at = 0; at + 5 <= body.length; ) {
    const flags = body[at]!;
    const length = body.readUInt32BE(at + 1);
    const data = body.subarray(at + 5, at + 5 + length);
    if (flags & 0x02) {
      try {
        const end = JSON.parse(data.toString("utf8")) as { error?: { code?: string; message?: string } };
        return end.error ? { code: end.error.code ?? "unknown", message: end.error.message } : { code: "ok" };
      } catch {
        return { code: "bad end message", message: data.toString("utf8").slice(0, 200) };
      }
    }
    at += 5 + length;
  }
  return { code: "ok" };
}

/** Sends one request on `session`; answers the outcome (never throws). */
function call(session: ClientHttp2Session, target: Target, contentType: string, body: Uint8Array, credential: Credential | undefined): Promise<Outcome> {
  const streaming = target.method.methodKind !== "unary";
  const headers: Record<string, string> = {
    ":method": "POST",
    ":path": target.path,
    "content-type": contentType,
    "connect-protocol-version": "1",
    // A stream that opens is ended by the server at this deadline: the fuzzer never resets a
    // stream itself (many client resets on one connection are what a rapid-reset attack looks like).
    "connect-timeout-ms": streaming ? String(streamReadMs) : "15000",
  };
  if (credential?.kind === "hmac")
    Object.assign(
      headers,
      signingHeaders({ callerId: credential.callerId, secret: credential.secret, procedure: target.path, body, nowSeconds: Date.now() / 1000 }),
    );
  if (credential?.kind === "bearer") headers.authorization = `Bearer ${credential.token}`;
  return new Promise<Outcome>((resolve) => {
    let settled = false;
    const chunks: Buffer[] = [];
    let status = 0;
    let responseType = "";
    const req = session.request(headers);
    const finish = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(hang);
      resolve(outcome);
    };
    const hang = setTimeout(() => {
      finish({ code: "hang" });
      req.close(http2.NGHTTP2_CANCEL);
    }, hangMs);
    req.on("response", (h) => {
      status = Number(h[":status"]);
      responseType = String(h["content-type"] ?? "");
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => finish(codeOf(status, responseType, Buffer.concat(chunks), streaming)));
    req.on("error", (err) => finish({ code: "reset", message: err.message }));
    req.end(Buffer.from(body));
  });
}

const serious = new Set(["internal", "unknown", "hang", "http 500", "bad end message"]);

test("mutated binary and JSON messages, signed: 0 internal errors, 0 crashes, 0 hangs, and the panel healthy after", async () => {
  const { report, ca, up } = stack;
  const rssBefore = await stack.rssMiB();
  const healthBefore = await stack.healthMs();

  const sessions = new Map<string, ClientHttp2Session>();
  const sessionFor = (listener: "panel" | "admin") => {
    let s = sessions.get(listener);
    if (!s || s.closed || s.destroyed) {
      s = http2Connect(report.listeners[listener].url, { ca });
      s.on("error", () => {});
      sessions.set(listener, s);
    }
    return s;
  };
  const codes = new Map<string, number>();
  const byMethod = new Map<string, Map<string, number>>();
  const problems: string[] = [];
  const resets = new Map<string, number>();
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < cases && problems.length < 20 && stack.alive()) {
      const i = next++;
      const r = seededRandom(seed + i);
      const target = targets[i % targets.length]!;
      const message = randomEncodedMessage(r, target.method.input);
      const json = message.json !== undefined && r.chance(0.4);
      const mutated = r.chance(0.9);
      const encoded = json
        ? mutated
          ? mutateJson(r, message.json!)
          : { bytes: Buffer.from(message.json!), how: "valid" }
        : mutated
          ? mutateBinary(r, message.binary)
          : { bytes: message.binary, how: "valid" };
      const streaming = target.method.methodKind !== "unary";
      const framed = streaming ? envelope(r, encoded.bytes, mutated) : { bytes: encoded.bytes, how: undefined };
      const contentType = `application/${streaming ? "connect+" : ""}${json ? "json" : "proto"}`;
      // Now and then the credential is left off, to exercise the refusals too.
      const credential = r.chance(0.97) ? target.credential : undefined;
      // A body past the read limit is refused before it is read; the rest of it arrives as frames on
      // a closed stream, which the server counts against the connection: such bodies go on their own.
      const own = framed.bytes.length > 1024 * 1024 ? http2Connect(report.listeners[target.listener].url, { ca }).on("error", () => {}) : undefined;
      const outcome = await call(own ?? sessionFor(target.listener), target, contentType, framed.bytes, credential);
      own?.destroy();
      codes.set(outcome.code, (codes.get(outcome.code) ?? 0) + 1);
      const perMethod = byMethod.get(target.path) ?? byMethod.set(target.path, new Map()).get(target.path)!;
      perMethod.set(outcome.code, (perMethod.get(outcome.code) ?? 0) + 1);
      if (outcome.code === "reset" || outcome.code.startsWith("http"))
        resets.set(`${outcome.code} ${outcome.message ?? ""}`, (resets.get(`${outcome.code} ${outcome.message ?? ""}`) ?? 0) + 1);
      if (serious.has(outcome.code)) {
        problems.push(
          `case ${i} (FUZZ_SEED=${seed}, +${i}): ${target.path} ${contentType} ${framed.how ?? encoded.how}: ${outcome.code} ${outcome.message ?? ""}`.slice(
            0,
            400,
          ),
        );
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  for (const s of sessions.values()) s.close();

  const alive = stack.alive();
  const healthAfter = alive ? await stack.healthMs() : Number.NaN;
  const rssAfter = alive ? await stack.rssMiB() : Number.NaN;
  const reached = [...byMethod].filter(([, c]) =>
    [...c.keys()].some((code) => !["unauthenticated", "permission_denied", "invalid_argument", "reset"].includes(code)),
  ).length;
  const internal = (codes.get("internal") ?? 0) + (codes.get("unknown") ?? 0);
  console.log(
    `fuzz: ${next} cases over ${targets.length} RPCs on 2 listeners in ${seconds.toFixed(0)} s (FUZZ_SEED=${seed}): ${internal} internal errors, ${alive ? 0 : 1} crashes, ${codes.get("hang") ?? 0} hangs; ` +
      `${reached} RPCs answered something past validation; /healthz ${healthBefore.toFixed(1)} → ${healthAfter.toFixed(1)} ms; RSS ${rssBefore.toFixed(0)} → ${rssAfter.toFixed(0)} MiB`,
  );
  console.log(
    `fuzz: answers ${[...codes]
      .sort((a, b) => b[1] - a[1])
      .map(([c, n]) => `${c} ${n}`)
      .join(", ")}`,
  );
  console.log(`fuzz: streams reset: ${[...resets].map(([m, n]) => `${m} ×${n}`).join("; ")}`);
  assert.ok(alive, `the panel process exited during the fuzz: ${up.stderr().slice(-2000)}`);
  const failedLines = up
    .stderr()
    .split("\n")
    .filter((l) => l.includes("rpc failed"))
    .slice(-5);
  assert.equal(problems, [], `cases the server mishandled:\n${problems.join("\n")}\nthe panel's log:\n${failedLines.join("\n")}`);
  assert.is(next, cases, "every case ran");
  assert.ok(healthAfter < 100, `/healthz answers within 100 ms after the fuzz (${healthAfter.toFixed(1)} ms)`);
});

test.run();
