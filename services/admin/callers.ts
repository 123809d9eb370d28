import { randomBytes } from "node:crypto";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "../lib/db.js";
import type { KnownCaller } from "../lib/hmac/verify.js";
import type { Keyring } from "../lib/secrets/keyring.js";
import { insertCaller, rotateCallerSecret, selectCaller, selectCallers, updateCallerStatus, type CallerRow } from "./store.js";

/** A caller as operators see it: never its secret. */
export interface CallerInfo {
  id: string;
  description: string;
  status: "active" | "inactive";
  allowedProcedures: string[];
  createdAt: Date;
  rotatedAt: Date | null;
  /** Until when the secret before the last rotation is still accepted (null: it is not). */
  previousSecretValidUntil: Date | null;
}

/** A caller id: what goes into `X-Caller-Id`. */
export const callerIdPattern = /^[A-Za-z0-9_.:-]{1,128}$/;

const procedurePattern = /^\/[A-Za-z_][A-Za-z0-9_.]*\.[A-Za-z_][A-Za-z0-9_]*\/(\*|[A-Za-z_][A-Za-z0-9_]*)$/;

/** A fresh caller secret: 32 random bytes as 64 hex characters. */
export function generateCallerSecret(): string {
  return randomBytes(32).toString("hex");
}

/**
 * Checks an allow-list: each entry is `/<package>.<Service>/<Method>` or `/<package>.<Service>/*`
 * naming a service and method that exist. Throws InvalidArgument naming the bad entry.
 */
export function checkAllowedProcedures(entries: readonly string[], knownServices: readonly DescService[]): string[] {
  if (entries.length === 0)
    throw new ConnectError("a caller needs at least one allowed procedure, e.g. /myosicam.license.v1.LicenseService/*", Code.InvalidArgument);
  const byName = new Map(knownServices.map((s) => [s.typeName, s]));
  for (const entry of entries) {
    if (!procedurePattern.test(entry)) {
      throw new ConnectError(
        `allowed procedure "${entry}" must look like /myosicam.license.v1.LicenseService/ValidateLicense or /myosicam.license.v1.LicenseService/*`,
        Code.InvalidArgument,
      );
    }
    const [, service, method] = entry.split("/") as [string, string, string];
    const desc = byName.get(service);
    if (!desc)
      throw new ConnectError(`allowed procedure "${entry}" names unknown service ${service}; known: ${[...byName.keys()].join(", ")}`, Code.InvalidArgument);
    if (method !== "*" && !desc.methods.some((m) => m.name === method)) {
      throw new ConnectError(
        `allowed procedure "${entry}": ${service} has no method ${method}; it has ${desc.methods.map((m) => m.name).join(", ")}`,
        Code.InvalidArgument,
      );
    }
  }
  return [...new Set(entries)];
}

const notFound = (id: string) => new ConnectError(`no caller "${id}"; see \`npx myosicam caller list\``, Code.NotFound);

/**
 * The callers admin trusts (DESIGN.md §3.1), with their secrets sealed by ADMIN_ENCRYPTION_KEY.
 * `findCaller` reads the database on every request: a deactivation or rotation takes effect on
 * the very next request of any replica, with nothing to invalidate.
 */
export function createCallerRegistry(db: Knex, keyring: Keyring, knownServices: readonly DescService[]) {
  const open = (row: CallerRow, column: "secret" | "previous_secret", envelope: string) =>
    keyring.open(envelope, { table: "callers", column, rowId: row.id }).plaintext.toString("utf8");
  const seal = (id: string, column: "secret" | "previous_secret", secret: string) =>
    keyring.seal(Buffer.from(secret, "utf8"), { table: "callers", column, rowId: id });

  return {
    /** Whether `secret` is the caller's current secret (development set-up). */
    async holdsSecret(id: string, secret: string): Promise<boolean> {
      const row = await selectCaller(db, id);
      return row !== undefined && open(row, "secret", row.secret) === secret;
    },

    async findCaller(id: string): Promise<KnownCaller | undefined> {
      const row = await selectCaller(db, id);
      if (!row) return undefined;
      const secrets = [open(row, "secret", row.secret)];
      if (row.previous_secret !== null && row.previous_valid) secrets.push(open(row, "previous_secret", row.previous_secret));
      return { id: row.id, active: row.status === "active", secrets, allowedProcedures: row.allowed_procedures };
    },

    /**
     * Creates a caller; answers it and its secret (shown once). `secret` is for the development
     * set-up only, which installs the one it wrote to config/.env.
     */
    async create(input: {
      id: string;
      description?: string;
      allowedProcedures: readonly string[];
      secret?: string;
    }): Promise<{ caller: CallerInfo; secret: string }> {
      if (!callerIdPattern.test(input.id)) throw new ConnectError(`caller id "${input.id}" must be 1–128 letters, digits or _.:-`, Code.InvalidArgument);
      const allowedProcedures = checkAllowedProcedures(input.allowedProcedures, knownServices);
      const secret = input.secret ?? generateCallerSecret();
      const created = await insertCaller(db, {
        id: input.id,
        description: input.description ?? "",
        secret: seal(input.id, "secret", secret),
        allowedProcedures,
      });
      if (!created)
        throw new ConnectError(`caller "${input.id}" already exists; rotate its secret with \`npx myosicam caller rotate ${input.id}\``, Code.AlreadyExists);
      return { caller: (await this.get(input.id))!, secret };
    },

    async get(id: string): Promise<CallerInfo | undefined> {
      const row = await selectCaller(db, id);
      return row && infoOf(row);
    },

    async list(): Promise<CallerInfo[]> {
      return (await selectCallers(db)).map(infoOf);
    },

    /** Deactivates (revokes) or re-activates a caller; effective on its next request. */
    async setStatus(id: string, status: "active" | "inactive"): Promise<CallerInfo> {
      if (!(await updateCallerStatus(db, id, status))) throw notFound(id);
      return (await this.get(id))!;
    },

    /**
     * Gives a caller a new secret. The old one stays valid for `overlapSeconds` (0: refused at
     * once), so the caller can switch without downtime. Answers the new secret (shown once).
     */
    async rotate(id: string, overlapSeconds: number): Promise<{ caller: CallerInfo; secret: string }> {
      const row = await selectCaller(db, id);
      if (!row) throw notFound(id);
      const secret = generateCallerSecret();
      const previous = overlapSeconds > 0 ? seal(id, "previous_secret", open(row, "secret", row.secret)) : null;
      const rotated = await rotateCallerSecret(db, {
        id,
        expectedSecret: row.secret,
        secret: seal(id, "secret", secret),
        previousSecret: previous,
        overlapSeconds,
      });
      if (!rotated)
        throw new ConnectError(`caller "${id}" was rotated by someone else at the same time; run the rotation again if you still need it`, Code.Aborted);
      return { caller: (await this.get(id))!, secret };
    },
  };
}

export type CallerRegistry = ReturnType<typeof createCallerRegistry>;

function infoOf(row: CallerRow): CallerInfo {
  return {
    id: row.id,
    description: row.description,
    status: row.status,
    allowedProcedures: row.allowed_procedures,
    createdAt: row.created_at,
    rotatedAt: row.rotated_at,
    previousSecretValidUntil: row.previous_valid ? row.previous_valid_until : null,
  };
}
