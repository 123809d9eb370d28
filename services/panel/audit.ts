import { Code, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { peerAddressKey, requestIdKey } from "../lib/context-keys.js";
import type { Knex } from "../lib/db.js";
import { toConnectError } from "../lib/errors.js";
import { mutationKey, principalKey } from "../lib/principal.js";
import { appendAudit, type AuditEntry } from "./audit-log.js";
import { isOperatorService, policyOf } from "./authorization.js";

/** `PermissionDenied` → `permission_denied`: the outcome of a refused or failed mutation. */
export const codeName = (code: Code): string => Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();

/**
 * Every mutation of the operator API runs in a transaction that its handler writes through
 * (`writeDb(ctx, …)`); its audit row — actor, action, targets, outcome, address, request id — is
 * appended in the same transaction, so the change and its row commit together or not at all. A
 * mutation that is refused or fails is rolled back and recorded with its code and reason.
 */
export function createAuditInterceptor(db: Knex, log: Logger): Interceptor {
  return (next) => async (req) => {
    if (!isOperatorService(req.service.typeName) || req.stream) return next(req);
    if (!policyOf(`/${req.service.typeName}/${req.method.name}`)?.mutation) return next(req);
    const targets: string[] = [];
    const entry = (outcome: string, detail: string): AuditEntry => {
      // Read at the end: Login sets the principal it signed in.
      const principal = req.contextValues.get(principalKey);
      return {
        actorKind: principal?.kind ?? "system",
        actorId: principal?.id ?? "",
        actorName: principal?.name ?? "anonymous",
        action: `${req.service.name}.${req.method.name}`,
        target: [...new Set(targets)].join(" ").slice(0, 20_000),
        outcome,
        detail: detail.slice(0, 2000),
        ip: req.contextValues.get(peerAddressKey).replace(/^::ffff:/, ""),
        requestId: req.contextValues.get(requestIdKey),
      };
    };
    try {
      return await db.transaction(async (trx) => {
        req.contextValues.set(mutationKey, { db: trx, targets });
        const res = await next(req);
        await appendAudit(trx, entry("ok", ""));
        return res;
      });
    } catch (err) {
      req.contextValues.set(mutationKey, undefined);
      const refused = toConnectError(err);
      // The refusal's own words; an internal failure's cause stays in the log, not the audit row.
      await appendAudit(db, entry(codeName(refused.code), refused.rawMessage)).catch((auditErr: unknown) =>
        log.error({ err: auditErr, requestId: req.contextValues.get(requestIdKey) }, "could not record a failed mutation in the audit log"),
      );
      throw err;
    }
  };
}
