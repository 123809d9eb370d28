import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { FleetEventSchema, FleetService, WatchEventsResponseSchema } from "../../gen/myosicam/panel/v1/fleet_pb.js";
import type { Knex } from "../lib/db.js";
import { isScoped, principalOf, roleAtLeast, scopeIncludes, type Principal } from "../lib/principal.js";
import { selectFleetEventsAfter, selectOldestFleetEventId, type FleetEventHub, type FleetEventRow } from "./fleet-events.js";

/** An application-level keepalive, for proxies that end quiet streams (NOTES-connect.md). */
export const watchKeepaliveMs = 25_000;

/** Whether `principal` may see `row`: servers in its scope; install jobs for unscoped operators. */
export function eventVisible(principal: Principal, row: FleetEventRow): boolean {
  if (row.server_id === null) return row.kind === "install_job" && roleAtLeast(principal.role, "operator") && !isScoped(principal.scope);
  return scopeIncludes(principal.scope, { id: row.server_id, tags: row.tags ?? [] });
}

const text = (v: unknown) => (typeof v === "string" ? v : "");

export function fleetEventMessage(row: FleetEventRow): MessageInitShape<typeof FleetEventSchema> {
  const d = row.data;
  const base = { id: BigInt(row.id), at: timestampFromDate(new Date(row.at)), serverId: row.server_id ?? "" };
  switch (row.kind) {
    case "server":
      return {
        ...base,
        change: { case: "server", value: { name: text(d.name), status: text(d.status), approved: d.approved === true, tags: (d.tags as string[]) ?? [] } },
      };
    case "instance":
      return {
        ...base,
        change: {
          case: "instance",
          value: { instanceId: text(d.instance_id), name: text(d.name), running: d.running === true, pid: Number(d.pid ?? 0), gone: d.gone === true },
        },
      };
    case "command":
      return {
        ...base,
        change: {
          case: "command",
          value: { commandId: text(d.command_id), kind: text(d.kind), instance: text(d.instance), status: text(d.status), result: text(d.result) },
        },
      };
    case "alert":
      return { ...base, change: { case: "alert", value: { alertId: BigInt(Number(d.alert_id ?? 0)), kind: text(d.kind), message: text(d.message) } } };
    case "install_job":
      return {
        ...base,
        change: {
          case: "installJob",
          value: {
            jobId: text(d.job_id),
            kind: d.queue === "install.uninstall" ? "uninstall" : "install",
            state: text(d.state),
            step: text(d.step),
            percent: Number(d.percent ?? 0),
            error: text(d.error),
          },
        },
      };
  }
}

type Response = MessageInitShape<typeof WatchEventsResponseSchema>;

/** Handlers of `myosicam.panel.v1.FleetService`. */
export function createFleetService(deps: { db: Knex; hub: FleetEventHub; keepaliveMs?: number }): ServiceImpl<typeof FleetService> {
  const keepaliveMs = deps.keepaliveMs ?? watchKeepaliveMs;
  return {
    async *watchEvents(req, ctx): AsyncGenerator<Response> {
      const principal = principalOf(ctx);
      // Subscribed first, so nothing that happens during the replay is missed; what both the
      // replay and the live feed deliver is sent once (by id).
      const live: FleetEventRow[] = [];
      let wake: (() => void) | undefined;
      let seen = 0n;
      const unsubscribe = deps.hub.subscribe((rows) => {
        for (const row of rows) if (eventVisible(principal, row)) live.push(row);
        const lastId = BigInt(rows.at(-1)!.id);
        if (lastId > seen) seen = lastId;
        wake?.();
      });
      try {
        let cursor = req.after > 0n ? req.after : BigInt(await deps.hub.head());
        let reset = false;
        if (req.after > 0n) {
          const oldest = await selectOldestFleetEventId(deps.db);
          if (oldest !== undefined && req.after < BigInt(oldest) - 1n) {
            reset = true;
            cursor = BigInt(await deps.hub.head());
          }
        }
        let sentFirst = false;
        if (req.after > 0n && !reset) {
          for (;;) {
            const rows = await selectFleetEventsAfter(deps.db, String(cursor), 1000);
            if (rows.length === 0) break;
            cursor = BigInt(rows.at(-1)!.id);
            const events = rows.filter((r) => eventVisible(principal, r)).map(fleetEventMessage);
            if (events.length > 0 || !sentFirst) {
              yield { events, cursor };
              sentFirst = true;
            }
            if (rows.length < 1000) break;
          }
        }
        if (!sentFirst) yield { events: [], cursor, reset };
        for (;;) {
          ctx.signal.throwIfAborted();
          const fresh = live.splice(0).filter((r) => BigInt(r.id) > cursor);
          const next = seen > cursor ? seen : cursor;
          if (fresh.length > 0 || next > cursor) {
            cursor = next;
            if (fresh.length > 0) yield { events: fresh.map(fleetEventMessage), cursor };
            continue;
          }
          const outcome = await new Promise<"event" | "keepalive">((resolve) => {
            const timer = setTimeout(() => resolve("keepalive"), keepaliveMs);
            const done = () => {
              clearTimeout(timer);
              ctx.signal.removeEventListener("abort", done);
              wake = undefined;
              resolve("event");
            };
            wake = done;
            ctx.signal.addEventListener("abort", done, { once: true });
          });
          if (outcome === "keepalive") yield { events: [], cursor };
        }
      } finally {
        unsubscribe();
      }
    },
  };
}
