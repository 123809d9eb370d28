import { createHash, randomBytes, randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "../lib/db.js";
import { ensureServer, insertInstallToken, selectInstallTokens, selectInstallTokensByPrefix, type InstallTokenRow } from "./store.js";

/** Default lifetime of an install token (DESIGN.md §3.2). */
export const defaultInstallTokenTtlSeconds = 30 * 60;
/** Longest lifetime an operator may ask for. */
export const maxInstallTokenTtlSeconds = 7 * 86400;

/** How a token (install or agent) is stored and looked up: SHA-256, hex. */
export const hashToken = (token: string) => createHash("sha256").update(token, "utf8").digest("hex");

/** What audit rows and `token list` show of a token: the first 8 hex characters of its hash. */
export const hashPrefix = (token: string) => hashToken(token).slice(0, 8);

export const serverNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** An install token as operators see it: never the token, only its hash prefix. */
export interface InstallTokenInfo {
  hashPrefix: string;
  server: string;
  serverId: string;
  state: InstallTokenRow["state"];
  createdBy: string;
  createdAt: Date;
  expiresAt: Date;
  consumedAt: Date | null;
}

const infoOf = (row: InstallTokenRow): InstallTokenInfo => ({
  hashPrefix: row.token_hash.slice(0, 8),
  server: row.server_name,
  serverId: row.server_id,
  state: row.state,
  createdBy: row.created_by,
  createdAt: row.created_at,
  expiresAt: row.expires_at,
  consumedAt: row.consumed_at,
});

/**
 * Issues an install token for the server named `server` (created when new): 32 random bytes,
 * answered once as 64 hex characters, stored only as its SHA-256.
 */
export async function createInstallToken(
  db: Knex,
  input: { server: string; ttlSeconds?: number; createdBy: string },
): Promise<{ token: string; info: InstallTokenInfo }> {
  if (!serverNamePattern.test(input.server)) {
    throw new ConnectError(`server name "${input.server}" must be 1–63 letters, digits, _ . or -, starting with a letter or digit`, Code.InvalidArgument);
  }
  const ttl = input.ttlSeconds ?? defaultInstallTokenTtlSeconds;
  if (!Number.isInteger(ttl) || ttl < 60 || ttl > maxInstallTokenTtlSeconds) {
    throw new ConnectError("an install token lives between 1 minute and 7 days", Code.InvalidArgument);
  }
  const token = randomBytes(32).toString("hex");
  const hash = hashToken(token);
  await db.transaction(async (trx) => {
    const serverId = await ensureServer(trx, { id: randomUUID(), name: input.server, createdBy: input.createdBy });
    await insertInstallToken(trx, { hash, serverId, createdBy: input.createdBy, ttlSeconds: ttl });
  });
  const [row] = await selectInstallTokensByPrefix(db, hash);
  return { token, info: infoOf(row!) };
}

export async function listInstallTokens(db: Knex): Promise<InstallTokenInfo[]> {
  return (await selectInstallTokens(db)).map(infoOf);
}
