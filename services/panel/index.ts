import { createClient, type ConnectRouter } from "@connectrpc/connect";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { ApiClientService } from "../../gen/myosicam/panel/v1/api_client_pb.js";
import { AuditService } from "../../gen/myosicam/panel/v1/audit_pb.js";
import { AuthService } from "../../gen/myosicam/panel/v1/auth_pb.js";
import { OperatorService } from "../../gen/myosicam/panel/v1/operator_pb.js";
import type { Knex } from "../lib/db.js";
import { createNonceRecorder } from "../lib/hmac/nonce-store.js";
import { checkNewPassword, hashPassword } from "../lib/passwords.js";
import type { ServiceDeps, ServiceModule } from "../lib/service-module.js";
import { createApiClientService } from "./api-client-service.js";
import { createApiClients } from "./api-clients.js";
import { appendAudit } from "./audit-log.js";
import { createAuditInterceptor } from "./audit.js";
import { createAuditService } from "./audit-service.js";
import { createAuthService } from "./auth-service.js";
import { consoleRoute } from "./console-files.js";
import { createApiClientPrincipalInterceptor, createOperatorGate, isSignedRequest } from "./authentication.js";
import { createAuthorizationInterceptor, operatorServices } from "./authorization.js";
import { ensureLocalCliCredential, ensureOwner } from "./first-start.js";
import { operatorsAndAudit } from "./migrations/0001-operators.js";
import { createOperatorService } from "./operator-service.js";
import { createSessions } from "./sessions.js";
import {
  deleteExpiredSessions,
  deleteOldLoginFailures,
  deleteOperatorSessions,
  selectOperatorByEmail,
  touchApiClient,
  updateOperatorPassword,
} from "./store.js";

export { appendAudit, verifyAuditChain, type ChainVerdict } from "./audit-log.js";

const apiClientsOf = (deps: ServiceDeps) =>
  createApiClients(
    deps.db,
    createClient(CryptoService, deps.transportFor(CryptoService)),
    operatorServices.map((s) => `/${s.typeName}/*`),
  );

const sessionsOf = (deps: ServiceDeps) =>
  createSessions(deps.db, { idleSeconds: deps.config.sessionIdleSeconds, lifetimeSeconds: deps.config.sessionLifetimeSeconds });

/**
 * Notes an API client's last use at most once a minute per client and process: a busy integrator
 * costs no write per call (the statement also skips rows touched within the minute, for replicas).
 */
function lastUseRecorder(db: Knex) {
  const touched = new Map<string, number>();
  return async (id: string) => {
    const now = Date.now();
    if (now - (touched.get(id) ?? 0) < 60_000) return;
    if (touched.size > 10_000) touched.clear();
    touched.set(id, now);
    await touchApiClient(db, id);
  };
}

/** Origins besides the request's own that may change things with a session cookie. */
const allowedOrigins = (deps: ServiceDeps) => (deps.config.panelPublicUrl ? [deps.config.panelPublicUrl] : []);

/**
 * `myosicam.panel.v1`, the operator API (DESIGN.md §2, §3.7): sign-in and sessions, operators,
 * API clients, the audit log — and for every operator-API service on the panel listener, whoever
 * mounts it: authentication (session cookie or HMAC-signed API client), authorization by one
 * table (authorization.ts), and an audit row in the transaction of every mutation.
 */
export const panelService: ServiceModule = {
  name: "panel",
  listener: "panel",
  database: "panel",
  descriptors: [AuthService, OperatorService, ApiClientService, AuditService],
  migrations: [operatorsAndAudit],
  // API client secrets are sealed and opened by the key holder, in this process.
  requires: ["crypto"],
  // The operator console: a client of this API, served from the same origin (web/).
  httpRoutes: () => [consoleRoute()],
  routes(deps) {
    const clients = apiClientsOf(deps);
    const auth = createAuthService({
      db: deps.db,
      sessions: sessionsOf(deps),
      idleSeconds: deps.config.sessionIdleSeconds,
      lifetimeSeconds: deps.config.sessionLifetimeSeconds,
    });
    return (router: ConnectRouter) => {
      router.service(AuthService, auth);
      router.service(OperatorService, createOperatorService({ db: deps.db }));
      router.service(ApiClientService, createApiClientService({ db: deps.db, clients }));
      router.service(AuditService, createAuditService({ db: deps.db }));
    };
  },
  signedCalls(deps) {
    const nonces = createNonceRecorder(deps.db);
    deps.onStop(() => nonces.stop());
    const clients = apiClientsOf(deps);
    return {
      services: operatorServices,
      verifier: { findCaller: (id) => clients.findCaller(id), recordNonce: (id, nonce) => nonces.record(id, nonce) },
      // Requests without X-Caller-Id are the session cookie's (the gate below).
      applies: isSignedRequest,
    };
  },
  gate: (deps) => createOperatorGate({ sessions: sessionsOf(deps), allowedOrigins: allowedOrigins(deps), log: deps.log }),
  interceptors: (deps) => [
    createApiClientPrincipalInterceptor(lastUseRecorder(deps.db)),
    // Outside authorization, so that refused mutations are audited too.
    createAuditInterceptor(deps.db, deps.log),
    createAuthorizationInterceptor(),
  ],
  async afterStart(deps) {
    const url = deps.listenerUrl();
    if (url) {
      await ensureLocalCliCredential(deps.db, apiClientsOf(deps), {
        dataDir: deps.config.dataDir,
        panelUrl: url.replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//[::1]:"),
        certificate: deps.ownCertificate,
        log: deps.log,
      });
    }
    // Last of all: nothing that can fail comes between creating the password and printing it.
    const firstLogin = await ensureOwner(deps.db, deps.config.ownerEmail);
    return firstLogin ? { firstLogin } : {};
  },
  jobs: (deps) => [
    {
      queue: "panel.session-purge",
      cron: "41 * * * *",
      async run(ctx) {
        const sessions = await deleteExpiredSessions(deps.db, deps.config.sessionIdleSeconds);
        const failures = await deleteOldLoginFailures(deps.db, 3600);
        await ctx.output(`removed ${sessions} ended operator sessions and ${failures} old failed sign-ins`);
      },
    },
  ],
};

/**
 * `myosicam operator reset-password` on the panel host: the recovery path when no one can sign
 * in. Sets the password (the operator changes it at the next sign-in), ends their sessions, and
 * records it in the audit log as done on the panel host by `actor`.
 */
export async function resetOperatorPassword(db: Knex, email: string, password: string, actor: string): Promise<void> {
  checkNewPassword(password);
  const normal = email.trim().toLowerCase();
  const operator = await selectOperatorByEmail(db, normal);
  if (!operator) throw new Error(`no operator ${normal} on this panel`);
  const hash = await hashPassword(password);
  await db.transaction(async (trx) => {
    await updateOperatorPassword(trx, operator.id, hash, true);
    await deleteOperatorSessions(trx, operator.id);
    await appendAudit(trx, {
      actorKind: "system",
      actorId: "panel-host",
      actorName: actor,
      action: "operator reset-password (panel host)",
      target: `operator:${operator.id}`,
      outcome: "ok",
      detail: "",
      ip: "",
      requestId: "",
    });
  });
}
