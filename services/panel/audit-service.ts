import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { stringify } from "csv-stringify/sync";
import type { AuditFilter, AuditService } from "../../gen/myosicam/panel/v1/audit_pb.js";
import type { Knex } from "../lib/db.js";
import { idCursor } from "../lib/paging.js";
import type { AuditRow } from "./audit-log.js";
import { auditEventMessage } from "./messages.js";
import { selectAuditBatch, selectAuditPage, type AuditQuery } from "./store.js";

const csvColumns = ["id", "at", "actor_kind", "actor_id", "actor_name", "action", "target", "outcome", "detail", "ip", "request_id", "hash"] as const;

function queryOf(filter: AuditFilter | undefined): AuditQuery {
  const since = filter?.since ? timestampDate(filter.since) : undefined;
  const until = filter?.until ? timestampDate(filter.until) : undefined;
  if (since && until && since >= until) throw new ConnectError("filter: since must be before until", Code.InvalidArgument);
  return { actor: filter?.actor, action: filter?.action, target: filter?.target, since, until, failuresOnly: filter?.failuresOnly };
}

/** Handlers of `myosicam.panel.v1.AuditService`: reading the log; nothing here writes it. */
export function createAuditService(deps: { db: Knex }): ServiceImpl<typeof AuditService> {
  return {
    async listAuditEvents(req) {
      const size = req.pageSize || 50;
      const rows: AuditRow[] = await selectAuditPage(deps.db, queryOf(req.filter), size + 1, idCursor(req.pageToken));
      const page = rows.slice(0, size);
      return { events: page.map(auditEventMessage), nextPageToken: rows.length > size ? String(page.at(-1)!.id) : "" };
    },

    async *exportAuditEvents(req, ctx) {
      const query = queryOf(req.filter);
      yield { chunk: Buffer.from(stringify([csvColumns as unknown as string[]])) };
      let after: string | undefined;
      for (;;) {
        ctx.signal.throwIfAborted();
        const rows: AuditRow[] = await selectAuditBatch(deps.db, query, 1000, after);
        if (rows.length === 0) return;
        const records = rows.map((r) => csvColumns.map((c) => (c === "at" ? new Date(r.at).toISOString() : String(r[c]))));
        yield { chunk: Buffer.from(stringify(records)) };
        after = String(rows.at(-1)!.id);
      }
    },
  };
}
