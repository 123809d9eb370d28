import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { InstanceService } from "../../gen/myosicam/panel/v1/instance_pb.js";
import type { Knex } from "../lib/db.js";
import { timestampOf } from "../lib/timestamps.js";
import { principalOf } from "../lib/principal.js";
import { serverInScope } from "./server-scope.js";
import { countDriftedAccounts } from "./account-store.js";
import { instanceBelongsTo, selectHostSeries, selectInstanceSeries, selectInstances } from "./instance-store.js";
import { resourceRetentionDays } from "./sync.js";

/** Spans up to this long are answered with raw readings when no resolution is asked for. */
const rawSpanSeconds = 6 * 3600;
/** About this many points for longer spans. */
const targetPoints = 300;

/** The bucket width for a span: 0 (raw) for short spans, else a whole number of minutes. */
export function chooseResolution(spanSeconds: number, asked: number): number {
  if (asked !== 0) return asked;
  if (spanSeconds <= rawSpanSeconds) return 0;
  return Math.max(60, Math.ceil(spanSeconds / targetPoints / 60) * 60);
}

/** Handlers of `myosicam.panel.v1.InstanceService`. */
export function createInstanceService(deps: { db: Knex }): ServiceImpl<typeof InstanceService> {
  const { db } = deps;
  return {
    async listInstances(req, ctx) {
      await serverInScope(db, principalOf(ctx).scope, req.serverId);
      const rows = await selectInstances(db, req.serverId, req.includeGone);
      const drift = await countDriftedAccounts(
        db,
        rows.map((r) => r.id),
      );
      return {
        instances: rows.map((r) => ({
          id: r.id,
          serverId: r.server_id,
          name: r.name,
          configDir: r.config_dir,
          version: r.version,
          running: r.running,
          pid: r.pid ?? 0,
          uptimeSeconds: BigInt(r.uptime_seconds ?? 0),
          readerCount: r.reader_count,
          readersLoaded: r.readers_loaded ?? undefined,
          readersEnabled: r.readers_enabled ?? undefined,
          ports: r.ports.map((p) => ({ protocol: p.protocol, port: p.port, ssl: p.ssl, caid: p.caid ?? "", active: p.active !== false })),
          webif: {
            host: r.webif.host ?? "",
            port: r.webif.port ?? 0,
            ssl: r.webif.ssl ?? false,
            reachable: r.webif.reachable ?? false,
            username: r.webif.username ?? "",
            readOnly: r.webif.readOnly ?? false,
          },
          settings: r.settings,
          problems: r.problems,
          syncedAt: timestampOf(r.synced_at),
          goneAt: timestampOf(r.gone_at),
          driftedAccounts: drift.get(r.id) ?? 0,
        })),
      };
    },

    async getResourceHistory(req, ctx) {
      await serverInScope(db, principalOf(ctx).scope, req.serverId);
      const since = timestampDate(req.since!);
      const until = req.until ? timestampDate(req.until) : new Date();
      if (since >= until) throw new ConnectError("since must be before until", Code.InvalidArgument);
      if (req.resolutionSeconds !== 0 && req.resolutionSeconds < 60)
        throw new ConnectError("resolution_seconds: 0 (choose) or at least 60", Code.InvalidArgument);
      const oldest = Date.now() - (resourceRetentionDays + 1) * 86400_000;
      if (until.getTime() < oldest) throw new ConnectError(`readings are kept ${resourceRetentionDays} days; ask for a span within them`, Code.OutOfRange);
      const resolution = chooseResolution((until.getTime() - since.getTime()) / 1000, req.resolutionSeconds);
      if (req.instanceId && !(await instanceBelongsTo(db, req.instanceId, req.serverId))) {
        throw new ConnectError(`server ${req.serverId} has no instance ${req.instanceId}`, Code.NotFound);
      }
      const rows = req.instanceId
        ? await selectInstanceSeries(db, req.instanceId, since, until, resolution)
        : await selectHostSeries(db, req.serverId, since, until, resolution);
      return {
        resolutionSeconds: resolution,
        points: rows.map((p) => ({
          at: timestampOf(p.at),
          cpuPercent: Number(p.cpu_percent),
          memoryMb: Number(p.memory_mb),
          memoryTotalMb: Number(p.memory_total_mb),
          diskMb: Number(p.disk_mb),
          load1: Number(p.load1),
          samples: Number(p.samples),
        })),
      };
    },
  };
}
