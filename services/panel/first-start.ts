import { createHash, randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { resolve } from "node:path";
import type { Logger } from "pino";
import { localCredentialFile, readCliCredential, writeCliCredential } from "../lib/cli-credential.js";
import type { Knex } from "../lib/db.js";
import { generatePassword, hashPassword } from "../lib/passwords.js";
import type { ApiClients } from "./api-clients.js";
import { appendAudit } from "./audit-log.js";
import { countOperators, insertOperator, selectApiClient, selectApiClientByName } from "./store.js";

/** Who the panel's own actions are recorded as. */
const system = { actorKind: "system" as const, actorId: "panel", actorName: "first start", ip: "", requestId: "", outcome: "ok", detail: "" };

/**
 * The owner account of an empty panel: created once, with a generated password (20 characters)
 * that must be changed at the first sign-in. Answers the e-mail and password to print, once; on
 * later starts (any operator exists) nothing. Concurrent replicas: the audit lock makes one win.
 */
export async function ensureOwner(db: Knex, email: string): Promise<{ email: string; password: string } | undefined> {
  if ((await countOperators(db)) > 0) return undefined;
  const password = generatePassword(20);
  const passwordHash = await hashPassword(password);
  return db.transaction(async (trx) => {
    // Taken before counting again, so two replicas starting together create one owner.
    await trx.raw("select pg_advisory_xact_lock(?)", [0x6f776e72]);
    if ((await countOperators(trx)) > 0) return undefined;
    const id = randomUUID();
    await insertOperator(trx, {
      id,
      email,
      passwordHash,
      role: "owner",
      scope: { serverIds: [], tags: [] },
      mustChangePassword: true,
      createdBy: "first start",
    });
    await appendAudit(trx, { ...system, action: "first start: owner created", target: `operator:${id}` });
    return { email, password };
  });
}

/**
 * The local CLI's credential: an owner API client whose secret is written into the data
 * directory (0600), so `npx myosicam …` on the panel host needs no sign-in. Kept when the file's
 * client still exists and is not revoked; otherwise a client `local-cli@<host>:<directory hash>`
 * is created (or its secret rotated) and the file rewritten.
 */
export async function ensureLocalCliCredential(
  db: Knex,
  clients: ApiClients,
  options: { dataDir: string; panelUrl: string; certificate: string; log: Logger },
): Promise<void> {
  const file = localCredentialFile(options.dataDir);
  const existing = await readCliCredential(file).catch((err: Error) => {
    options.log.warn({ file, reason: err.message }, "the local CLI credential is unusable; writing a new one");
    return undefined;
  });
  if (existing) {
    const row = await selectApiClient(db, existing.clientId);
    if (row && !row.revoked_at) {
      if (existing.panelUrl !== options.panelUrl || existing.certificate !== options.certificate) {
        await writeCliCredential(file, { ...existing, panelUrl: options.panelUrl, certificate: options.certificate });
      }
      return;
    }
  }
  // One client per data directory: replicas on one host (each its own directory) keep their own
  // credentials instead of rotating each other's; a directory that lost its file rotates its own.
  const directory = createHash("sha256").update(resolve(options.dataDir)).digest("hex").slice(0, 8);
  const name = `local-cli@${hostname().slice(0, 45)}:${directory}`.replace(/[^A-Za-z0-9 _.@:-]/g, "-");
  const { row, secret } = await db.transaction(async (trx) => {
    const known = await selectApiClientByName(trx, name);
    const issued =
      known && !known.revoked_at
        ? await clients.rotate(trx, known.id, 0)
        : await clients.create(trx, {
            name: known ? `${name.slice(0, 55)}-${randomUUID().slice(0, 8)}` : name,
            description: "the myosicam command line on the panel host (its secret is in the data directory)",
            role: "owner",
            scope: { serverIds: [], tags: [] },
            createdBy: "first start",
          });
    await appendAudit(trx, { ...system, action: "first start: local CLI credential written", target: `api_client:${issued.row.id}` });
    return issued;
  });
  await writeCliCredential(file, { panelUrl: options.panelUrl, clientId: row.id, secret, certificate: options.certificate });
  options.log.info({ file, client: row.id }, "wrote the local CLI's credential");
}
