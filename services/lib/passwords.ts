import { randomBytes, randomInt } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import argon2 from "argon2";

/** Shortest password accepted for an operator. */
export const minimumPasswordLength = 12;
/** Longest (Argon2 takes any length; this bounds the work a request can ask for). */
export const maximumPasswordLength = 1024;

/** Argon2id with the library's defaults (m = 64 MiB, t = 3, p = 4). */
export function hashPassword(password: string): Promise<string> {
  return argon2.hash(password, { type: argon2.argon2id });
}

/** Whether `password` matches `hash`; false for a malformed hash rather than an error. */
export function verifyPassword(hash: string, password: string): Promise<boolean> {
  return argon2.verify(hash, password).catch(() => false);
}

/**
 * A hash to verify against when the account is unknown, so that an unknown e-mail costs the same
 * time as a wrong password. Made once per process, lazily.
 */
export function createDecoyHash(): () => Promise<string> {
  let decoy: Promise<string> | undefined;
  return () => (decoy ??= hashPassword(randomBytes(16).toString("hex")));
}

/** InvalidArgument naming the rule when a new password is too short or too long. */
export function checkNewPassword(password: string): void {
  if (password.length < minimumPasswordLength) {
    throw new ConnectError(`the password must be at least ${minimumPasswordLength} characters`, Code.InvalidArgument);
  }
  if (password.length > maximumPasswordLength) throw new ConnectError(`the password must be at most ${maximumPasswordLength} characters`, Code.InvalidArgument);
}

const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/** A random password of `length` (default 20) unambiguous letters and digits (≈ 5.8 bits each). */
export function generatePassword(length = 20): string {
  let out = "";
  for (let i = 0; i < length; i++) out += alphabet[randomInt(alphabet.length)];
  return out;
}

/** Failed sign-ins allowed per minute per address and per e-mail (DESIGN.md §3.7). */
export const signInFailuresPerMinute = 5;

/** What a password sign-in checks: the failed-attempt record and the account. */
export interface SignInStore<Account extends { password_hash: string; disabled_at: Date | null }> {
  recentFailures(subjects: readonly string[], seconds: number): Promise<number>;
  recordFailures(subjects: readonly string[]): Promise<void>;
  findAccount(email: string): Promise<Account | undefined>;
}

/**
 * A password check for sign-ins: after 5 failures within a minute from one address or for one
 * e-mail it refuses without checking (ResourceExhausted); an unknown e-mail is checked against a
 * decoy hash, so it costs the time of a wrong password; every refusal is recorded and says the
 * same. Answers the account.
 */
export function createSignInCheck<Account extends { password_hash: string; disabled_at: Date | null }>(store: SignInStore<Account>) {
  const decoy = createDecoyHash();
  return async (email: string, password: string, ip: string): Promise<Account> => {
    const normal = email.trim().toLowerCase();
    const subjects = [`ip:${ip}`, `email:${normal}`];
    if ((await store.recentFailures(subjects, 60)) >= signInFailuresPerMinute) {
      throw new ConnectError("too many failed sign-ins; wait a minute and try again", Code.ResourceExhausted);
    }
    const account = await store.findAccount(normal);
    const matches = await verifyPassword(account?.password_hash ?? (await decoy()), password);
    if (!account || !matches || account.disabled_at !== null) {
      await store.recordFailures(subjects);
      throw new ConnectError("wrong e-mail address or password", Code.Unauthenticated);
    }
    return account;
  };
}
