import { createHash, randomBytes, randomUUID } from "node:crypto";
import type { Knex } from "../lib/db.js";
import { createSignInCheck } from "../lib/passwords.js";
import type { Principal } from "../lib/principal.js";
import {
  insertLoginFailures,
  insertSession,
  recentLoginFailures,
  recordLogin,
  scopeOf,
  selectLiveSession,
  selectOperatorByEmail,
  touchSession,
  type OperatorRow,
  type SessionRow,
} from "./store.js";

/**
 * The session cookie. `__Host-` makes browsers insist on Secure, Path=/ and no Domain, so a
 * sibling subdomain cannot plant or shadow it.
 */
export const sessionCookieName = "__Host-myosicam_session";

/** A session's idle clock moves at most this often (one write a minute for a busy console). */
const touchAfterSeconds = 60;

export const hashSessionToken = (token: string) => createHash("sha256").update(token, "utf8").digest("hex");

/** The session token in a Cookie header, if well-formed. */
export function sessionTokenFrom(cookieHeader: string | null): string | undefined {
  if (!cookieHeader) return undefined;
  for (const part of cookieHeader.split(";")) {
    const [name, value] = part.trim().split("=", 2);
    if (name === sessionCookieName && value && /^[0-9a-f]{64}$/.test(value)) return value;
  }
  return undefined;
}

/** Set-Cookie for a new session: HttpOnly, Secure, SameSite=Strict, host-only. */
export const sessionCookie = (token: string, maxAgeSeconds: number) =>
  `${sessionCookieName}=${token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}`;

/** Set-Cookie that removes the session cookie. */
export const clearedSessionCookie = () => `${sessionCookieName}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0`;

export function operatorPrincipal(operator: OperatorRow, session?: SessionRow, idleSeconds = 0): Principal {
  return {
    kind: "operator",
    id: operator.id,
    name: operator.email,
    role: operator.role,
    scope: scopeOf(operator),
    mustChangePassword: operator.temporary_login,
    session: session && {
      id: session.id,
      idleExpiresAt: new Date(Math.min(new Date(session.last_seen_at).getTime() + idleSeconds * 1000, new Date(session.expires_at).getTime())),
      expiresAt: new Date(session.expires_at),
    },
  };
}

/** Operators' sign-in: passwords (Argon2id), the failed-login limit, and server-side sessions. */
export function createSessions(db: Knex, options: { idleSeconds: number; lifetimeSeconds: number }) {
  const checkPassword = createSignInCheck({
    recentFailures: (subjects, seconds) => recentLoginFailures(db, subjects, seconds),
    recordFailures: (subjects) => insertLoginFailures(db, subjects),
    findAccount: (email) => selectOperatorByEmail(db, email),
  });
  return {
    /**
     * Checks the password and opens a session; answers its token (for the cookie only). After 5
     * failures within a minute from one address or for one e-mail, refuses without checking.
     * Unknown e-mails cost the same time as wrong passwords.
     */
    async login(email: string, password: string, client: { ip: string; userAgent: string }): Promise<{ token: string; principal: Principal }> {
      const operator = await checkPassword(email, password, client.ip);
      const token = randomBytes(32).toString("hex");
      const session = await insertSession(db, {
        id: randomUUID(),
        tokenHash: hashSessionToken(token),
        operatorId: operator.id,
        lifetimeSeconds: options.lifetimeSeconds,
        ip: client.ip,
        userAgent: client.userAgent.slice(0, 300),
      });
      await recordLogin(db, operator.id);
      return { token, principal: operatorPrincipal(operator, session, options.idleSeconds) };
    },

    /** The principal of a live session token, or undefined (unknown, idle, expired, disabled). */
    async authenticate(token: string): Promise<Principal | undefined> {
      const live = await selectLiveSession(db, hashSessionToken(token), options.idleSeconds);
      if (!live) return undefined;
      if (Date.now() - new Date(live.session.last_seen_at).getTime() > touchAfterSeconds * 1000) {
        live.session.last_seen_at = await touchSession(db, live.session.id);
      }
      return operatorPrincipal(live.operator, live.session, options.idleSeconds);
    },
  };
}

export type Sessions = ReturnType<typeof createSessions>;
