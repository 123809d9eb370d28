import { connect as http2Connect } from "node:http2";
import type { ConnectRouter } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { AgentService } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { LicenseService } from "../../gen/myosicam/license/v1/license_pb.js";
import type { Knex } from "../../services/lib/db.js";
import { signingHeaders } from "../../services/lib/hmac/canonical.js";
import { createNonceRecorder } from "../../services/lib/hmac/nonce-store.js";
import { callerKey, createHmacAuth, type HmacRefusalEvent } from "../../services/lib/hmac/server-auth.js";
import type { KnownCaller } from "../../services/lib/hmac/verify.js";
import type { Logger } from "../../services/lib/log.js";
import { createRequestContextInterceptor } from "../../services/lib/request-context.js";
import { createServer, type RunningServer } from "../../services/lib/server.js";
import type { TlsIdentity } from "../../services/lib/tls.js";
import { everydayServerOptions } from "./server-options.js";

/** Callers the test controls, and a clock it can move or stop (`stoppedAt`, in seconds). */
export interface TestTrust {
  callers: Map<string, KnownCaller>;
  clock: { offsetSeconds: number; stoppedAt?: number };
  refusals: HmacRefusalEvent[];
}

/**
 * A real HTTPS server whose LicenseService and AgentService require signatures (unless `protect`
 * is false: the same server without the checks, a benchmark's baseline), with nonces in PostgreSQL. GetPlanCatalog answers one plan named after the authenticated caller (so tests see
 * who the server believed called); Subscribe sends one keepalive.
 */
export async function startSignedServer(
  db: Knex,
  tls: TlsIdentity,
  log: Logger,
  trust: TestTrust,
  protect = true,
): Promise<RunningServer & { heldCalls(): number }> {
  // Nonces are checked in batches, as the services do.
  const nonces = createNonceRecorder(db);
  const auth = createHmacAuth({
    verifier: {
      findCaller: async (id) => trust.callers.get(id),
      recordNonce: (id, nonce) => nonces.record(id, nonce),
      nowSeconds: () => (trust.clock.stoppedAt ?? Date.now() / 1000) + trust.clock.offsetSeconds,
      skewSeconds: 300,
    },
    protectedServices: new Set(protect ? [LicenseService.typeName, AgentService.typeName] : []),
    log,
    onRefusal: (event) => {
      trust.refusals.push(event);
    },
  });
  const routes = (router: ConnectRouter) => {
    router.service(LicenseService, {
      getPlanCatalog: (_req, ctx) => ({ plans: [{ id: "echo", name: ctx.values.get(callerKey)?.id ?? "(none)" }] }),
    });
    router.service(AgentService, {
      async *subscribe() {
        yield { message: { case: "keepalive", value: {} } };
      },
    });
  };
  const { listen, heldCalls } = createServer({
    name: "signed-test",
    tls,
    routes,
    // As the panel serves it: the agent's command stream on the held-stream path.
    heldStreams: [AgentService.method.subscribe],
    requestGate: auth.requestGate,
    interceptors: [createRequestContextInterceptor(log, new Map()), auth.interceptor, createValidateInterceptor()],
    ...everydayServerOptions(log),
  });
  return Object.assign(await listen(0, "127.0.0.1"), { heldCalls });
}

/** A raw Connect unary JSON call, so tests can alter what was signed before it is sent. */
export interface RawCall {
  procedure: string;
  body: string;
  headers: Record<string, string>;
  method?: "POST" | "GET";
}

/** Signs `body` for `procedure` as `callerId` with `secret`. */
export function signedCall(callerId: string, secret: string, procedure: string, body: string, nowSeconds = Date.now() / 1000): RawCall {
  return { procedure, body, headers: signingHeaders({ callerId, secret, procedure, body: Buffer.from(body), nowSeconds }) };
}

/** Sends a raw call; answers the HTTP status and the parsed JSON body. */
export function send(
  url: string,
  ca: string,
  call: RawCall,
): Promise<{ status: number; body: { code?: string; message?: string; plans?: Array<{ name: string }> } }> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(url, { ca });
    session.on("error", reject);
    const req = session.request({
      ":method": call.method ?? "POST",
      ":path": call.procedure,
      "content-type": "application/json",
      "connect-protocol-version": "1",
      ...call.headers,
    });
    let text = "";
    let status = 0;
    req.on("response", (h) => (status = Number(h[":status"])));
    req.setEncoding("utf8");
    req.on("data", (c: string) => (text += c));
    req.on("end", () => {
      session.close();
      resolve({ status, body: text ? JSON.parse(text) : {} });
    });
    req.on("error", reject);
    req.end(call.method === "GET" ? undefined : call.body);
  });
}
