import { randomBytes } from "node:crypto";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import type { Knex } from "../lib/db.js";
import type { KnownCaller } from "../lib/hmac/verify.js";
import type { Principal, RoleName, ServerScope } from "../lib/principal.js";
import { insertApiClient, revokeApiClient, rotateApiClientSecret, scopeOf, selectApiClient, selectApiClients, type ApiClientRow } from "./store.js";

/** An API client's id: the caller id it signs with. */
export const apiClientIdPattern = /^ac_[0-9a-f]{24}$/;

/** A KnownCaller that also says which principal it is (what the operator API authorizes). */
export interface ApiClientCaller extends KnownCaller {
  principal: Principal;
}

const notFound = (id: string) => new ConnectError(`no API client ${id}; see ApiClientService.ListApiClients (\`npx myosicam apiclient list\`)`, Code.NotFound);

/**
 * API clients (docs/api.md): HMAC callers of the operator API whose secrets the crypto service
 * seals. Every signed request reads the client's row, so a revocation or rotation counts on the
 * very next request of any replica; opened secrets are cached while their envelope is unchanged.
 */
export function createApiClients(db: Knex, crypto: Client<typeof CryptoService>, allowedProcedures: readonly string[]) {
  const opened = new Map<string, string>();
  const open = async (row: ApiClientRow, column: "secret" | "previous_secret", envelope: string) => {
    const cached = opened.get(envelope);
    if (cached !== undefined) return cached;
    const res = await crypto.decrypt({ envelope, context: { table: "api_clients", column, rowId: row.id } });
    const secret = Buffer.from(res.plaintext).toString("utf8");
    if (opened.size > 10_000) opened.clear();
    opened.set(envelope, secret);
    return secret;
  };
  const seal = async (id: string, column: "secret" | "previous_secret", secret: string) =>
    (await crypto.encrypt({ plaintext: Buffer.from(secret, "utf8"), context: { table: "api_clients", column, rowId: id } })).envelope;

  return {
    /** The caller for a signed request, or undefined when the id is no client of this panel. */
    async findCaller(id: string): Promise<ApiClientCaller | undefined> {
      if (!apiClientIdPattern.test(id)) return undefined;
      const row = await selectApiClient(db, id);
      if (!row) return undefined;
      const principal: Principal = { kind: "api_client", id: row.id, name: row.name, role: row.role, scope: scopeOf(row) };
      if (row.revoked_at) return { id, active: false, secrets: [], allowedProcedures: [], principal };
      const secrets = [await open(row, "secret", row.secret)];
      if (row.previous_secret && row.previous_valid_until && row.previous_valid_until > new Date()) {
        secrets.push(await open(row, "previous_secret", row.previous_secret));
      }
      return { id, active: true, secrets, allowedProcedures, principal };
    },

    /** Creates a client; answers it and its secret (shown once). AlreadyExists for a taken name. */
    async create(
      db: Knex,
      input: { name: string; description: string; role: RoleName; scope: ServerScope; ownerId?: string; createdBy: string },
    ): Promise<{ row: ApiClientRow; secret: string }> {
      const id = `ac_${randomBytes(12).toString("hex")}`;
      const secret = randomBytes(32).toString("hex");
      const row = await insertApiClient(db, { ...input, id, secret: await seal(id, "secret", secret) });
      if (!row) throw new ConnectError(`an API client named "${input.name}" exists already; choose another name`, Code.AlreadyExists);
      return { row, secret };
    },

    /** All clients, or those acting for `ownerId`. */
    list: (ownerId?: string) => selectApiClients(db, ownerId),

    async get(id: string): Promise<ApiClientRow> {
      const row = await selectApiClient(db, id);
      if (!row) throw notFound(id);
      return row;
    },

    /** A new secret; the old one stays valid for `overlapSeconds`. FailedPrecondition when revoked. */
    async rotate(db: Knex, id: string, overlapSeconds: number): Promise<{ row: ApiClientRow; secret: string }> {
      const current = await selectApiClient(db, id);
      if (!current) throw notFound(id);
      if (current.revoked_at) throw new ConnectError(`API client ${id} is revoked; create a new one`, Code.FailedPrecondition);
      const secret = randomBytes(32).toString("hex");
      // The old secret moves to previous_secret: sealed again for that column (the column is
      // associated data, so the envelope of `secret` does not open there).
      const previous = overlapSeconds > 0 ? await seal(id, "previous_secret", await open(current, "secret", current.secret)) : null;
      const row = await rotateApiClientSecret(db, id, await seal(id, "secret", secret), previous, overlapSeconds);
      return { row, secret };
    },

    async revoke(db: Knex, id: string): Promise<ApiClientRow> {
      const row = await revokeApiClient(db, id);
      if (!row) throw notFound(id);
      return row;
    },
  };
}

export type ApiClients = ReturnType<typeof createApiClients>;
