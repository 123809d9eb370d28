import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createContextKey, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import { AdminService, CallerStatus } from "../../gen/myosicam/admin/v1/admin_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CallerSchema, LicenseSchema } from "../../gen/myosicam/admin/v1/admin_pb.js";
import { LicenseState } from "../../gen/myosicam/license/v1/license_pb.js";
import { peerAddressKey, requestIdKey } from "../lib/context-keys.js";
import type { Knex } from "../lib/db.js";
import { requestIdFrom, requestIdHeader } from "../lib/request-context.js";
import type { CallerInfo, CallerRegistry } from "./callers.js";
import { planMessage } from "./license-service.js";
import type { LicenseBook, LicenseInfo } from "./licenses.js";
import type { AdminOperator, OperatorDesk } from "./operators.js";
import { insertAudit } from "./store.js";

/** The admin operator of the request; set by the session gate for every method but Login. */
export const adminOperatorKey = createContextKey<AdminOperator | undefined>(undefined, { description: "admin operator" });

const bearer = /^Bearer ([0-9a-f]{64})$/;

/**
 * The session check of `myosicam.admin.v1`, before the body is read: every method but Login needs
 * `Authorization: Bearer <session token>` of a live session.
 */
export function createAdminSessionGate(desk: OperatorDesk, log: Logger) {
  return async (ctx: HandlerContext) => {
    if (ctx.service.typeName !== AdminService.typeName || ctx.method.name === "Login") return;
    const token = bearer.exec(ctx.requestHeader.get("authorization") ?? "")?.[1];
    const operator = token === undefined ? undefined : await desk.authenticate(token);
    if (!operator) {
      const requestId = requestIdFrom(ctx.requestHeader.get(requestIdHeader));
      log.warn(
        { rpc: ctx.method.name, requestId, peer: ctx.values.get(peerAddressKey), reason: token ? "unknown_or_expired_session" : "no_session" },
        "admin call refused",
      );
      const err = new ConnectError("sign in first: call Login, then send Authorization: Bearer <session token>", Code.Unauthenticated);
      err.metadata.set(requestIdHeader, requestId);
      throw err;
    }
    ctx.values.set(adminOperatorKey, operator);
  };
}

const ts = (d: Date | null | undefined) => (d ? timestampFromDate(new Date(d)) : undefined);

function callerMessage(c: CallerInfo): MessageInitShape<typeof CallerSchema> {
  return {
    id: c.id,
    description: c.description,
    status: c.status === "active" ? CallerStatus.ACTIVE : CallerStatus.INACTIVE,
    allowedProcedures: c.allowedProcedures,
    createdAt: ts(c.createdAt),
    rotatedAt: ts(c.rotatedAt),
    previousSecretValidUntil: ts(c.previousSecretValidUntil),
  };
}

const licenseStates = { active: LicenseState.ACTIVE, expired: LicenseState.EXPIRED, revoked: LicenseState.REVOKED, unknown: LicenseState.UNKNOWN } as const;

function licenseMessage(l: LicenseInfo): MessageInitShape<typeof LicenseSchema> {
  return {
    id: l.id,
    keyHint: l.keyHint,
    customer: l.customer,
    planId: l.planId,
    state: licenseStates[l.state],
    expiresAt: ts(l.expiresAt),
    panelId: l.panelId ?? "",
    createdAt: ts(l.createdAt),
    lastValidatedAt: ts(l.lastValidatedAt),
    lastUsage: l.lastUsage ?? undefined,
    revokedReason: l.revokedReason ?? "",
  };
}

export interface AdminServiceDeps {
  db: Knex;
  callers: CallerRegistry;
  book: LicenseBook;
  desk: OperatorDesk;
}

/** Handlers of `myosicam.admin.v1.AdminService`; every mutation leaves an audit row. */
export function createAdminService(deps: AdminServiceDeps): ServiceImpl<typeof AdminService> {
  const { callers, book, desk } = deps;
  const operatorOf = (ctx: HandlerContext) => {
    const operator = ctx.values.get(adminOperatorKey);
    // The gate sets it; reaching a handler without it means the gate was not installed.
    if (!operator) throw new ConnectError("sign in first", Code.Unauthenticated);
    return operator;
  };
  const audit = (ctx: HandlerContext, action: string, target: string) =>
    insertAudit(deps.db, {
      actor: operatorOf(ctx).email,
      action,
      target,
      ip: ctx.values.get(peerAddressKey) || undefined,
      requestId: ctx.values.get(requestIdKey) || undefined,
    });

  return {
    async login(req, ctx) {
      const session = await desk.login(req.email, req.password, ctx.values.get(peerAddressKey) || "unknown");
      return { sessionToken: session.token, expiresAt: timestampFromDate(session.expiresAt), email: session.operator.email };
    },
    async logout(_req, ctx) {
      const token = bearer.exec(ctx.requestHeader.get("authorization") ?? "")?.[1];
      if (token) await desk.logout(token);
      return {};
    },
    async listCallers() {
      return { callers: (await callers.list()).map(callerMessage) };
    },
    async createCaller(req, ctx) {
      operatorOf(ctx);
      const { caller, secret } = await callers.create({ id: req.id, description: req.description, allowedProcedures: req.allowedProcedures });
      await audit(ctx, "caller.create", caller.id);
      return { caller: callerMessage(caller), secret };
    },
    async rotateCallerSecret(req, ctx) {
      operatorOf(ctx);
      const { caller, secret } = await callers.rotate(req.id, req.overlapSeconds);
      await audit(ctx, "caller.rotate", caller.id);
      return { caller: callerMessage(caller), secret };
    },
    async setCallerStatus(req, ctx) {
      operatorOf(ctx);
      const status = req.status === CallerStatus.ACTIVE ? "active" : "inactive";
      const caller = await callers.setStatus(req.id, status);
      await audit(ctx, status === "active" ? "caller.activate" : "caller.revoke", caller.id);
      return { caller: callerMessage(caller) };
    },
    async listPlans() {
      return { plans: (await book.plans()).map((p) => ({ plan: planMessage(p), public: p.public })) };
    },
    async setPlan(req, ctx) {
      operatorOf(ctx);
      const plan = await book.setPlan({
        id: req.id,
        name: req.name,
        maxServers: req.maxServers,
        maxInstances: req.maxInstances,
        monthlyPriceMinor: req.monthlyPriceMinor,
        currency: req.currency,
        features: req.features,
        public: req.public,
      });
      await audit(ctx, "plan.set", plan.id);
      return { plan: { plan: planMessage(plan), public: plan.public } };
    },
    async listLicenses() {
      return { licenses: (await book.list()).map(licenseMessage) };
    },
    async issueLicense(req, ctx) {
      operatorOf(ctx);
      const { license, key } = await book.issue({
        customer: req.customer,
        planId: req.planId,
        expiresAt: req.expiresAt ? timestampDate(req.expiresAt) : null,
        panelId: req.panelId || undefined,
      });
      await audit(ctx, "license.issue", license.id);
      return { license: licenseMessage(license), licenseKey: key };
    },
    async revokeLicense(req, ctx) {
      operatorOf(ctx);
      await book.revoke(req.id, req.reason);
      await audit(ctx, "license.revoke", req.id);
      return {};
    },
  };
}
