import { createHash, randomBytes, randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "../lib/db.js";
import { checkNewPassword, createDecoyHash, hashPassword, verifyPassword } from "../lib/passwords.js";
import {
  deleteSession,
  insertLoginFailures,
  insertOperator,
  insertSession,
  recentLoginFailures,
  selectOperatorByEmail,
  selectOperators,
  selectSessionOperator,
  updateOperatorPassword,
} from "./store.js";

/** An authenticated admin operator. */
export interface AdminOperator {
  id: string;
  email: string;
}

/** Failed logins allowed per minute per IP and per e-mail address (DESIGN.md §3.7). */
export const loginFailuresPerMinute = 5;
/** How long an admin session lasts. */
export const sessionTtlSeconds = 12 * 3600;

const emailPattern = /^[^\s@]{1,64}@[^\s@]{1,255}$/;

const hashToken = (token: string) => createHash("sha256").update(token, "utf8").digest("hex");

function normalisedEmail(email: string): string {
  const normal = email.trim().toLowerCase();
  if (!emailPattern.test(normal)) throw new ConnectError(`"${email}" is not an e-mail address`, Code.InvalidArgument);
  return normal;
}

/** Admin operators (Argon2id passwords) and their revocable server-side sessions. */
export function createOperatorDesk(db: Knex) {
  // Verified against when the e-mail is unknown, so an unknown user costs the same time.
  const decoy = createDecoyHash();

  return {
    async create(email: string, password: string): Promise<AdminOperator> {
      const normal = normalisedEmail(email);
      checkNewPassword(password);
      const id = randomUUID();
      if (!(await insertOperator(db, { id, email: normal, passwordHash: await hashPassword(password) }))) {
        throw new ConnectError(
          `an admin operator ${normal} already exists; change the password with \`npx myosicam admin operator password\``,
          Code.AlreadyExists,
        );
      }
      return { id, email: normal };
    },

    async setPassword(email: string, password: string): Promise<void> {
      const normal = normalisedEmail(email);
      checkNewPassword(password);
      if (!(await updateOperatorPassword(db, normal, await hashPassword(password)))) {
        throw new ConnectError(`no admin operator ${normal}`, Code.NotFound);
      }
    },

    list: () => selectOperators(db),

    /**
     * Checks the password and opens a session; answers its token (shown once). After 5 failures
     * within a minute from one IP or for one address, refuses without checking.
     */
    async login(email: string, password: string, ip: string): Promise<{ token: string; expiresAt: Date; operator: AdminOperator }> {
      const normal = email.trim().toLowerCase();
      const subjects = [`ip:${ip}`, `email:${normal}`];
      if ((await recentLoginFailures(db, subjects, 60)) >= loginFailuresPerMinute) {
        throw new ConnectError("too many failed logins; wait a minute and try again", Code.ResourceExhausted);
      }
      const operator = await selectOperatorByEmail(db, normal);
      const matches = await verifyPassword(operator?.password_hash ?? (await decoy()), password);
      if (!operator || !matches || operator.disabled_at !== null) {
        await insertLoginFailures(db, subjects);
        throw new ConnectError("wrong e-mail address or password", Code.Unauthenticated);
      }
      const token = randomBytes(32).toString("hex");
      const expiresAt = await insertSession(db, { tokenHash: hashToken(token), operatorId: operator.id, ttlSeconds: sessionTtlSeconds, ip });
      return { token, expiresAt, operator: { id: operator.id, email: operator.email } };
    },

    /** The operator of a live session token, or undefined. */
    async authenticate(token: string): Promise<AdminOperator | undefined> {
      if (!/^[0-9a-f]{64}$/.test(token)) return undefined;
      return selectSessionOperator(db, hashToken(token));
    },

    async logout(token: string): Promise<void> {
      await deleteSession(db, hashToken(token));
    },
  };
}

export type OperatorDesk = ReturnType<typeof createOperatorDesk>;
