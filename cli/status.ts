import { FleetService } from "../gen/myosicam/panel/v1/fleet_pb.js";
import { isoOf, printJson } from "./context.js";
import { panelApi } from "./panel-client.js";

/** `status`: the fleet at a glance (the console's overview cards) and the panel's license standing. */
export async function statusCommand(options: { json: boolean; tags: string[]; expiringDays?: number }): Promise<void> {
  const s = await (await panelApi()).client(FleetService).getFleetSummary({ tags: options.tags, expiringWithinDays: options.expiringDays ?? 0 });
  const l = s.license;
  if (options.json) {
    printJson({
      servers: {
        total: s.serversTotal,
        online: s.serversOnline,
        unreachable: s.serversUnreachable,
        pending: s.serversPending,
        new: s.serversNew,
        revoked: s.serversRevoked,
      },
      instances: { total: s.instancesTotal, running: s.instancesRunning, stopped: s.instancesStopped, webifUnreachable: s.webifUnreachable },
      accounts: { total: s.accountsTotal, expiring: s.accountsExpiring, expired: s.accountsExpired, expiringWithinDays: s.expiringWithinDays },
      alertsUnacknowledged: s.alertsUnacknowledged,
      license: l && {
        state: l.state,
        usable: l.usable,
        plan: l.planName || null,
        servers: { used: l.usedServers, max: l.maxServers || null },
        instances: { used: l.usedInstances, max: l.maxInstances || null },
        expiresOn: l.expiresOn || null,
        graceEndsAt: isoOf(l.graceEndsAt),
        checkedAt: isoOf(l.checkedAt),
        message: l.message,
      },
      approvalRequired: s.approvalRequired,
      heartbeat: { intervalSeconds: s.heartbeatIntervalSeconds, missedForUnreachable: s.missedHeartbeats },
    });
    return;
  }
  const quota = (used: number, max: number) => `${used} of ${max || "unlimited"}`;
  const lines = [
    `Servers     ${s.serversTotal}: ${s.serversOnline} online, ${s.serversUnreachable} unreachable, ${s.serversPending} pending, ${s.serversNew} new, ${s.serversRevoked} revoked`,
    `Instances   ${s.instancesTotal}: ${s.instancesRunning} running, ${s.instancesStopped} stopped; WebIF unreachable on ${s.webifUnreachable}`,
    `Accounts    ${s.accountsTotal}: ${s.accountsExpiring} expiring within ${s.expiringWithinDays} days, ${s.accountsExpired} expired`,
    `Alerts      ${s.alertsUnacknowledged} open`,
    ...(l
      ? [
          `License     ${l.state}${l.planName ? ` (${l.planName})` : ""}: servers ${quota(l.usedServers, l.maxServers)}, instances ${quota(l.usedInstances, l.maxInstances)}${l.expiresOn ? `, expires ${l.expiresOn}` : ""}`,
          `            ${l.message}`,
          ...(l.graceEndsAt ? [`            grace ends ${isoOf(l.graceEndsAt)}`] : []),
        ]
      : []),
    `New agents  ${s.approvalRequired ? "wait for approval (REQUIRE_AGENT_APPROVAL)" : "are trusted when they register with a valid token"}`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}
