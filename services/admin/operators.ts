import { createHash, randomBytes, randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "../lib/db.js";
import { checkNewPassword, createSignInCheck, hashPassword } from "../lib/passwords.js";
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
  const checkPassword = createSignInCheck({
    recentFailures: (subjects, seconds) => recentLoginFailures(db, subjects, seconds),
    recordFailures: (subjects) => insertLoginFailures(db, subjects),
    findAccount: (email) => selectOperatorByEmail(db, email),
  });

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
      const operator = await checkPassword(email, password, ip);
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
