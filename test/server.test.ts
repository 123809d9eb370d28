import { Code, ConnectError, createClient, createRouterTransport, type ConnectRouter } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createValidateInterceptor } from "@connectrpc/validate";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentService } from "../gen/myosicam/agent/v1/agent_pb.js";
import { RegistrationService } from "../gen/myosicam/agent/v1/registration_pb.js";
import { createRequestContextInterceptor } from "../services/lib/request-context.js";
import { createServer } from "../services/lib/server.js";
import { loadTlsIdentity, type TlsIdentity } from "../services/lib/tls.js";
import { makeTempDir } from "./helpers/cli.js";
import { captureLogs } from "./helpers/log-capture.js";

const test = suite("the HTTPS server and its interceptors");

let tls: TlsIdentity;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
test.before(async () => {
  dir = await makeTempDir("server");
  tls = await loadTlsIdentity({ dataDir: dir.path });
});
test.after(() => dir.remove());

const registration = {
  installToken: "b".repeat(64),
  agentId: "0b7d3c55-8f0e-4d53-9a7e-2f4f7a0c9b11",
  hostname: "h",
  ip: "10.0.0.1",
  os: "linux",
  osVersion: "",
  arch: "x64",
  agentVersion: "0.1.0",
};

test("an unexpected handler error reaches the caller as 'internal error' and the log with its cause", async () => {
  const logs = captureLogs();
  const routes = (router: ConnectRouter) =>
    router.service(RegistrationService, {
      register() {
        throw new Error('relation "install_tokens" does not exist');
      },
    });
  const interceptors = [createRequestContextInterceptor(logs.log, new Map([[RegistrationService.typeName, "agents"]])), createValidateInterceptor()];
  const client = createClient(RegistrationService, createRouterTransport(routes, { router: { interceptors } }));
  const err = await client.register(registration).catch((e: unknown) => ConnectError.from(e));
  assert.is((err as ConnectError).code, Code.Internal);
  assert.is((err as ConnectError).rawMessage, "internal error");
  const failure = logs.lines().find((l) => l.msg === "rpc failed");
  assert.ok(failure, logs.text());
  assert.is(failure.svc, "agents");
  assert.match(JSON.stringify(failure.err), /install_tokens/);
});

test("a stop drains an open server stream: the client sees Unavailable and no connection is cut by force", async () => {
  const logs = captureLogs();
  let streamOpened!: () => void;
  const opened = new Promise<void>((resolve) => (streamOpened = resolve));
  const routes = (router: ConnectRouter) =>
    router.service(AgentService, {
      async *subscribe(_req, ctx) {
        yield { message: { case: "keepalive", value: {} } };
        streamOpened();
        await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
        ctx.signal.throwIfAborted();
      },
    });
  const { listen } = createServer({
    name: "panel",
    tls,
    routes,
    interceptors: [createRequestContextInterceptor(logs.log, new Map())],
    readiness: async () => ({ ready: true, checks: {} }),
    log: logs.log,
    readMaxBytes: 1 << 20,
    maxTimeoutMs: 60_000,
    pingIntervalMs: 30_000,
  });
  const server = await listen(0, "127.0.0.1");
  const client = createClient(AgentService, createConnectTransport({ baseUrl: server.url, httpVersion: "2", nodeOptions: { ca: tls.cert } }));
  const received: string[] = [];
  const consumed = (async () => {
    for await (const res of client.subscribe({ agentVersion: "0.1.0" }, { timeoutMs: 0 })) received.push(res.message.case ?? "");
  })().then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  await opened;
  const result = await server.close(60_000);
  const err = await consumed;
  assert.equal(received, ["keepalive"]);
  assert.is(err?.code, Code.Unavailable, String(err));
  assert.is(result.forced, false, "closed gracefully, not at the deadline");
});

test("log redaction hides secrets under their usual names, at any of the first three depths", () => {
  const logs = captureLogs();
  logs.log.info(
    {
      password: "pw-canary-1",
      token: "tok-canary-2",
      request: { installToken: "tok-canary-3", headers: { authorization: "Bearer tok-canary-4", "x-signature": "sig-canary-5" } },
      smtp: { apiKey: "key-canary-6" },
      user: "alice",
    },
    "something happened",
  );
  const text = logs.text();
  for (const canary of ["pw-canary-1", "tok-canary-2", "tok-canary-3", "tok-canary-4", "sig-canary-5", "key-canary-6"]) {
    assert.not.ok(text.includes(canary), `${canary} leaked: ${text}`);
  }
  assert.ok(text.includes("alice"), "ordinary fields stay");
});

test.run();
