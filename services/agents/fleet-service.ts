import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  FleetEventSchema,
  WatchEventsResponseSchema,
  type FleetEvent,
  type FleetService,
  type WatchEventsResponse,
} from "../../gen/myosicam/panel/v1/fleet_pb.js";
import type { Knex } from "../lib/db.js";
import type { LicenseStanding, Usage } from "../lib/licensing/standing.js";
import { localDate } from "./account-store.js";
import { countUnacknowledged, selectMissedHeartbeats } from "./alert-store.js";
import { countFleet, countServersByStatus } from "./fleet-store.js";
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

type Response = MessageInitShape<typeof WatchEventsResponseSchema> | WatchEventsResponse;

// Every watcher gets the same rows from the hub: each row becomes a message once, not once per
// watcher (200 open pages and a burst of 1,000 events would otherwise build 200,000 messages).
const built = new WeakMap<FleetEventRow, FleetEvent>();
const messageOf = (row: FleetEventRow): FleetEvent => {
  let message = built.get(row);
  if (!message) built.set(row, (message = create(FleetEventSchema, fleetEventMessage(row))));
  return message;
};

/**
 * One event as it stands inside a WatchEventsResponse on the wire: the tag of `events` (field 1,
 * length-delimited: one byte), the length, the FleetEvent's bytes. Made once per event.
 */
const eventsTag = (WatchEventsResponseSchema.field.events.number << 3) | WireType.LengthDelimited;
const occurrences = new WeakMap<FleetEventRow, Uint8Array>();
const occurrenceOf = (row: FleetEventRow): Uint8Array => {
  let bytes = occurrences.get(row);
  if (!bytes)
    occurrences.set(
      row,
      (bytes = new BinaryWriter()
        .uint32(eventsTag)
        .bytes(toBinary(FleetEventSchema, messageOf(row)))
        .finish()),
    );
  return bytes;
};

/**
 * A response for a binary client (Connect proto, gRPC, gRPC-Web). Each event's bytes are made once
 * and shared by every watcher: the response carries them as raw occurrences of field 1 (a
 * repeated field on the wire is just its occurrences, one after another), so serializing it is one
 * copy of bytes instead of encoding every event again for each of 200 watchers. The client
 * decodes them as `events` like any other. (`$unknown` holds them: the writer writes an entry's
 * tag, then its bytes; the one entry's bytes are all occurrences but the first one's tag.)
 * JSON clients get the events as fields.
 */
function binaryResponse(rows: readonly FleetEventRow[], cursor: bigint, reset = false): WatchEventsResponse {
  const response = create(WatchEventsResponseSchema, { cursor, reset });
  if (rows.length > 0) {
    const all = Buffer.concat(rows.map(occurrenceOf));
    response.$unknown = [{ no: WatchEventsResponseSchema.field.events.number, wireType: WireType.LengthDelimited, data: all.subarray(1) }];
  }
  return response;
}

/** Whether the call's messages travel as protobuf binary (then `binaryResponse` applies). */
const binaryCodec = (contentType: string | null) => /^application\/(connect\+proto|grpc(-web)?(\+proto)?)(;|$)/.test(contentType ?? "");

export interface FleetServiceDeps {
  db: Knex;
  hub: FleetEventHub;
  keepaliveMs?: number;
  /** The license standing as registration enforces it, and what counts toward its quotas. */
  licenseStanding(): Promise<LicenseStanding>;
  currentUsage(): Promise<Usage>;
  approvalRequired: boolean;
  heartbeatIntervalSeconds: number;
  defaultMissedHeartbeats: number;
}

const timestampOf = (iso: string | undefined) => (iso ? timestampFromDate(new Date(iso)) : undefined);

/** Handlers of `myosicam.panel.v1.FleetService`. */
export function createFleetService(deps: FleetServiceDeps): ServiceImpl<typeof FleetService> {
  const keepaliveMs = deps.keepaliveMs ?? watchKeepaliveMs;
  return {
    async getFleetSummary(req, ctx) {
      const { scope } = principalOf(ctx);
      const days = req.expiringWithinDays || 7;
      const [servers, fleet, alerts, standing, usage, missed] = await Promise.all([
        countServersByStatus(deps.db, scope, req.tags),
        countFleet(deps.db, scope, req.tags, localDate(), days),
        countUnacknowledged(deps.db, scope),
        deps.licenseStanding(),
        deps.currentUsage(),
        selectMissedHeartbeats(deps.db),
      ]);
      return {
        serversTotal: servers.total,
        serversNew: servers.new,
        serversPending: servers.pending,
        serversOnline: servers.online,
        serversUnreachable: servers.unreachable,
        serversRevoked: servers.revoked,
        instancesTotal: fleet.instances.total,
        instancesRunning: fleet.instances.running,
        instancesStopped: fleet.instances.total - fleet.instances.running,
        webifUnreachable: fleet.instances.webifUnreachable,
        accountsTotal: fleet.accounts.total,
        accountsExpiring: fleet.accounts.expiring,
        accountsExpired: fleet.accounts.expired,
        expiringWithinDays: days,
        alertsUnacknowledged: alerts,
        license: {
          state: standing.state,
          usable: standing.usable,
          planName: standing.planName ?? "",
          maxServers: standing.quotas?.maxServers ?? 0,
          maxInstances: standing.quotas?.maxInstances ?? 0,
          usedServers: usage.servers,
          usedInstances: usage.instances,
          expiresOn: standing.expiresAt?.slice(0, 10) ?? "",
          graceEndsAt: timestampOf(standing.graceEndsAt),
          checkedAt: timestampOf(standing.checkedAt),
          message: standing.message,
        },
        approvalRequired: deps.approvalRequired,
        heartbeatIntervalSeconds: deps.heartbeatIntervalSeconds,
        missedHeartbeats: missed ?? deps.defaultMissedHeartbeats,
      };
    },

    async *watchEvents(req, ctx): AsyncGenerator<Response> {
      const principal = principalOf(ctx);
      const binary = binaryCodec(ctx.requestHeader.get("content-type"));
      const respond = (rows: readonly FleetEventRow[], cursor: bigint): Response =>
        binary ? binaryResponse(rows, cursor) : { events: rows.map(messageOf), cursor };
      // Subscribed first, so nothing that happens during the replay is missed; what both the
      // replay and the live feed deliver is sent once (by id).
      const live: FleetEventRow[] = [];
      let wake: (() => void) | undefined;
      let seen = 0n;
      const unsubscribe = deps.hub.subscribe((rows) => {
        for (const row of rows) if (eventVisible(principal, row)) live.push(row);
        const lastId = rows.at(-1)!.seq;
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
            cursor = rows.at(-1)!.seq;
            const visible = rows.filter((r) => eventVisible(principal, r));
            if (visible.length > 0 || !sentFirst) {
              yield respond(visible, cursor);
              sentFirst = true;
            }
            if (rows.length < 1000) break;
          }
        }
        if (!sentFirst) yield { events: [], cursor, reset };
        for (;;) {
          ctx.signal.throwIfAborted();
          const fresh = live.splice(0).filter((r) => r.seq > cursor);
          const next = seen > cursor ? seen : cursor;
          if (fresh.length > 0 || next > cursor) {
            cursor = next;
            if (fresh.length > 0) yield respond(fresh, cursor);
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
