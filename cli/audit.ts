import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { AuditService, type AuditEvent } from "../gen/myosicam/panel/v1/audit_pb.js";
import { PrincipalKind } from "../gen/myosicam/panel/v1/common_pb.js";
import { verifyAuditChain } from "../services/panel/index.js";
import { createCommandContext, isoOf, printJson } from "./context.js";
import { withDatabase } from "./database.js";
import { panelApi } from "./panel-client.js";

export interface AuditFilterOptions {
  actor?: string;
  action?: string;
  target?: string;
  since?: string;
  until?: string;
  failures?: boolean;
}

function when(flag: string, value: string | undefined): Timestamp | undefined {
  if (value === undefined) return undefined;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new ConnectError(`${flag} takes a date or time such as 2026-12-01 or 2026-12-01T08:00:00Z`, Code.InvalidArgument);
  return timestampFromDate(date);
}

const filterOf = (o: AuditFilterOptions) => ({
  actor: o.actor ?? "",
  action: o.action ?? "",
  target: o.target ?? "",
  since: when("--since", o.since),
  until: when("--until", o.until),
  failuresOnly: Boolean(o.failures),
});

function eventJson(e: AuditEvent) {
  return {
    id: Number(e.id),
    at: isoOf(e.at),
    actorKind: e.actorKind === PrincipalKind.API_CLIENT ? "api_client" : e.actorKind === PrincipalKind.OPERATOR ? "operator" : "system",
    actorId: e.actorId,
    actor: e.actorName,
    action: e.action,
    target: e.target,
    outcome: e.outcome,
    detail: e.detail,
    ip: e.ip,
    requestId: e.requestId,
  };
}

/** `audit list`: the newest rows matching the filters. */
export async function auditListCommand(options: AuditFilterOptions & { limit: number; json: boolean }): Promise<void> {
  const { events } = await (await panelApi()).client(AuditService).listAuditEvents({ filter: filterOf(options), pageSize: options.limit });
  if (options.json) return printJson({ events: events.map(eventJson) });
  const lines = events.map(
    (e) => `${isoOf(e.at)}  ${e.actorName.padEnd(24)} ${e.action.padEnd(36)} ${e.outcome.padEnd(10)} ${e.target}${e.detail ? `  (${e.detail})` : ""}`,
  );
  process.stdout.write(lines.length ? `${lines.join("\n")}\n` : "no audit rows match\n");
}

/** `audit export`: every matching row as CSV on stdout, oldest first. */
export async function auditExportCommand(options: AuditFilterOptions): Promise<void> {
  for await (const part of (await panelApi()).client(AuditService).exportAuditEvents({ filter: filterOf(options) }, { timeoutMs: 0 })) {
    if (!process.stdout.write(part.chunk)) await new Promise((resolve) => process.stdout.once("drain", resolve));
  }
}

/**
 * `audit verify`: on the panel host, reads the whole log from the database and recomputes every
 * hash link; exit 1 naming the first broken row.
 */
export async function auditVerifyCommand(options: { json: boolean }): Promise<void> {
  const context = await createCommandContext();
  const verdict = await withDatabase(context, "panel", (db) => verifyAuditChain(db));
  if (!verdict.intact) process.exitCode = 1;
  if (options.json) return printJson(verdict);
  process.stdout.write(
    verdict.intact
      ? `the audit log is intact: ${verdict.rows} rows, every hash link checks out\n`
      : `the audit log was tampered with: row ${verdict.brokenAt}: ${verdict.reason} (${verdict.rows - 1} rows before it check out)\n`,
  );
}
