import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { AuthService } from "../../gen/myosicam/panel/v1/auth_pb.js";
import { peerAddressKey } from "../lib/context-keys.js";
import type { Knex } from "../lib/db.js";
import { timestampOf } from "../lib/timestamps.js";
import { checkNewPassword, hashPassword, verifyPassword } from "../lib/passwords.js";
import { auditTargets, principalKey, principalOf, roleAtLeast, writeDb } from "../lib/principal.js";
import { principalMessage } from "./messages.js";
import { clearedSessionCookie, sessionCookie, type Sessions } from "./sessions.js";
import { deleteOperatorSessions, deleteSession, selectOperator, selectSession, selectSessions, updateOperatorPassword } from "./store.js";

const peer = (ctx: HandlerContext) => ctx.values.get(peerAddressKey).replace(/^::ffff:/, "") || "unknown";

/** Handlers of `myosicam.panel.v1.AuthService`. */
export function createAuthService(deps: { db: Knex; sessions: Sessions; idleSeconds: number; lifetimeSeconds: number }): ServiceImpl<typeof AuthService> {
  const { db, sessions } = deps;
  const operatorOnly = (ctx: HandlerContext) => {
    const principal = principalOf(ctx);
    if (principal.kind !== "operator") {
      throw new ConnectError("this is for operators signed in with a session; an API client has no password or session", Code.FailedPrecondition);
    }
    return principal;
  };
  return {
    async login(req, ctx) {
      auditTargets(ctx, `email:${req.email.trim().toLowerCase()}`);
      const { token, principal } = await sessions.login(req.email, req.password, { ip: peer(ctx), userAgent: ctx.requestHeader.get("user-agent") ?? "" });
      ctx.values.set(principalKey, principal);
      auditTargets(ctx, `session:${principal.session!.id}`);
      ctx.responseHeader.append("set-cookie", sessionCookie(token, deps.lifetimeSeconds));
      return { identity: principalMessage(principal) };
    },

    async logout(_req, ctx) {
      const principal = principalOf(ctx);
      if (principal.session) {
        await deleteSession(writeDb(ctx, db, `session:${principal.session.id}`), principal.session.id);
      }
      ctx.responseHeader.append("set-cookie", clearedSessionCookie());
      return {};
    },

    async whoAmI(_req, ctx) {
      return principalMessage(principalOf(ctx));
    },

    async changePassword(req, ctx) {
      const principal = operatorOnly(ctx);
      const operator = await selectOperator(db, principal.id);
      if (!operator || !(await verifyPassword(operator.password_hash, req.currentPassword))) {
        throw new ConnectError("the current password is wrong", Code.PermissionDenied);
      }
      checkNewPassword(req.newPassword);
      if (req.newPassword === req.currentPassword) throw new ConnectError("choose a password that differs from the current one", Code.InvalidArgument);
      const trx = writeDb(ctx, db, `operator:${principal.id}`);
      await updateOperatorPassword(trx, principal.id, await hashPassword(req.newPassword), false);
      // Every other session ends: whoever knew the old password is signed out everywhere.
      await deleteOperatorSessions(trx, principal.id, principal.session?.id);
      return {};
    },

    async listSessions(req, ctx) {
      const principal = operatorOnly(ctx);
      const whose = req.operatorId || principal.id;
      if (whose !== principal.id && !roleAtLeast(principal.role, "admin")) {
        throw new ConnectError("another operator's sessions are for admins", Code.PermissionDenied);
      }
      const rows = await selectSessions(db, whose, deps.idleSeconds);
      return {
        sessions: rows.map((s) => ({
          id: s.id,
          operatorId: s.operator_id,
          operatorEmail: s.operator_email,
          createdAt: timestampOf(s.created_at),
          lastSeenAt: timestampOf(s.last_seen_at),
          expiresAt: timestampOf(new Date(Math.min(new Date(s.last_seen_at).getTime() + deps.idleSeconds * 1000, new Date(s.expires_at).getTime()))),
          ip: s.ip,
          userAgent: s.user_agent,
          current: s.id === principal.session?.id,
        })),
      };
    },

    async revokeSession(req, ctx) {
      const principal = principalOf(ctx);
      const session = await selectSession(db, req.sessionId);
      // Someone else's session is NotFound to a non-admin: session ids do not leak.
      if (!session || (session.operator_id !== principal.id && !roleAtLeast(principal.role, "admin"))) {
        throw new ConnectError(`no session ${req.sessionId}`, Code.NotFound);
      }
      await deleteSession(writeDb(ctx, db, `session:${session.id}`, `operator:${session.operator_id}`), session.id);
      return {};
    },
  };
}
