import type { Knex } from "../lib/db.js";
import { sendMail } from "../lib/email/send.js";
import { readMailSettings, type OpenSecret } from "../lib/email/settings.js";
import type { JobDefinition } from "../lib/jobs/runner.js";
import { purgeBusySpells, selectBusySpells, selectMissedHeartbeats } from "./alert-store.js";
import { insertAlerts, markAlertsEmailed, markUnreachable, selectAlertsToEmail, type DeafSpan } from "./store.js";

/** Queue of the alert e-mails: one job per set of alerts raised together, retried by the queue. */
export const alertEmailQueue = "agents.alert-email";
/** Queue of the liveness scan. */
export const livenessQueue = "agents.liveness";

export type Enqueue = (queue: string, data?: Record<string, unknown>) => Promise<string>;

/**
 * Stores alerts (rows for the console) and queues one e-mail for them all: when the panel's own
 * network fails, every server goes quiet in the same scan, and the operators get one message
 * saying so, not one per server.
 */
export async function raiseAlerts(db: Knex, enqueue: Enqueue, alerts: ReadonlyArray<{ serverId: string; kind: string; message: string }>): Promise<void> {
  const ids = await insertAlerts(db, alerts);
  if (ids.length > 0) await enqueue(alertEmailQueue, { alertIds: ids });
}

/** How many alerts a digest e-mail lists one by one; the console lists all of them. */
export const alertsListedPerEmail = 100;

const headlines: Record<string, (count: number) => string> = {
  server_unreachable: (count) => `${count} servers are unreachable`,
  server_recovered: (count) => `${count} servers are reachable again`,
};

/** The e-mail for alerts raised together: one alert as itself, several as one digest. */
export function alertEmail(alerts: ReadonlyArray<{ kind: string; message: string; raised_at: Date }>): { subject: string; text: string } {
  const raisedAt = `Raised at ${new Date(alerts[0]!.raised_at).toISOString()}.\n`;
  if (alerts.length === 1) return { subject: `[MyOsicam] ${alerts[0]!.message.split(":")[0]}`, text: `${alerts[0]!.message}\n\n${raisedAt}` };
  const [first] = alerts;
  const oneKind = alerts.every((a) => a.kind === first!.kind) ? headlines[first!.kind] : undefined;
  const headline = oneKind ? oneKind(alerts.length) : `${alerts.length} alerts`;
  const byName = [...alerts].sort((a, b) => a.message.localeCompare(b.message, "en", { numeric: true }));
  const listed = byName.slice(0, alertsListedPerEmail).map((a) => `- ${a.message}`);
  const more = alerts.length - listed.length;
  const rest = more > 0 ? `\n... and ${more} more: the console's Alerts page lists every one.\n` : "";
  return { subject: `[MyOsicam] ${headline}`, text: `${headline}.\n\n${listed.join("\n")}\n${rest}\n${raisedAt}` };
}

export async function raiseRecoveries(db: Knex, enqueue: Enqueue, servers: ReadonlyArray<{ id: string; name: string }>): Promise<void> {
  await raiseAlerts(
    db,
    enqueue,
    servers.map((s) => ({ serverId: s.id, kind: "server_recovered", message: `server ${s.name} is reachable again: its agent sent a heartbeat` })),
  );
}

/** How long the record of a spell of refusing calls is kept: silence longer than that is an outage whatever the panel missed. */
export const busySpellRetentionSeconds = 86_400;

/**
 * The times the panel could not hear its agents, from the spells in which any of its processes
 * refused calls for load: from a spell's first refusal until one heartbeat interval after its last
 * (a refused agent calls again within an interval), plus the 5 s a spell's record may lag behind.
 * Overlapping spells (two replicas refusing together) are merged, so no time counts twice.
 */
export function deafSpans(spells: ReadonlyArray<{ started_at: Date; last_refused_at: Date }>, intervalSeconds: number): DeafSpan[] {
  const lagMs = (intervalSeconds + 5) * 1000;
  const spans = spells
    .map((s) => ({ from: new Date(s.started_at).getTime(), to: new Date(s.last_refused_at).getTime() + lagMs }))
    .sort((a, b) => a.from - b.from);
  const merged: Array<{ from: number; to: number }> = [];
  for (const span of spans) {
    const last = merged.at(-1);
    if (last && span.from <= last.to) last.to = Math.max(last.to, span.to);
    else merged.push({ ...span });
  }
  return merged.map((m) => ({ from: new Date(m.from), to: new Date(m.to) }));
}

/**
 * Marks servers silent for `missed` heartbeat intervals unreachable and raises one alert each.
 * Silence while the panel was refusing calls (on any replica) does not count: an agent turned away
 * with "busy, try again" was not silent, and a panel overloaded after a failover must not page
 * anyone about the servers it could not hear. The conditional UPDATE returns a server only on its
 * transition, so an outage raises exactly one alert however often (and on however many replicas)
 * the scan runs.
 */
export async function scanLiveness(db: Knex, enqueue: Enqueue, intervalSeconds: number, missed: number): Promise<number> {
  const deaf = deafSpans(await selectBusySpells(db, busySpellRetentionSeconds), intervalSeconds);
  const silent = await markUnreachable(db, intervalSeconds * missed, deaf);
  await raiseAlerts(
    db,
    enqueue,
    silent.map((s) => ({
      serverId: s.id,
      kind: "server_unreachable",
      message: `server ${s.name} is unreachable: no heartbeat since ${new Date(s.last_seen_at).toISOString()} (${missed} intervals of ${intervalSeconds} s missed)`,
    })),
  );
  return silent.length;
}

/**
 * The jobs of liveness: the scan every minute, and the alert e-mails. A process judges silence
 * only once it has itself been up for as long as the silence that makes a server unreachable:
 * after the panel was down (or restarted), the agents were not silent, the panel was deaf, and
 * they reconnect within that time. `now` is injectable for tests.
 */
export function livenessJobs(options: {
  db: Knex;
  enqueue: Enqueue;
  open: OpenSecret;
  intervalSeconds: number;
  missed: number;
  now?: () => number;
}): JobDefinition[] {
  const { db } = options;
  const now = options.now ?? Date.now;
  const startedAt = now();
  return [
    {
      queue: livenessQueue,
      cron: "* * * * *",
      retryLimit: 0,
      async run(ctx) {
        // The operators' setting (AlertService) wins over AGENT_MISSED_HEARTBEATS once set.
        const missed = (await selectMissedHeartbeats(db)) ?? options.missed;
        const upSeconds = (now() - startedAt) / 1000;
        if (upSeconds < options.intervalSeconds * missed) {
          await ctx.output(
            `not judged: this panel has listened for ${Math.floor(upSeconds)} s, less than the ${options.intervalSeconds * missed} s of silence that make a server unreachable`,
          );
          return;
        }
        const count = await scanLiveness(db, options.enqueue, options.intervalSeconds, missed);
        const purged = await purgeBusySpells(db, busySpellRetentionSeconds);
        await ctx.output(`${count} servers became unreachable${purged > 0 ? `; forgot ${purged} spells of refusing calls over a day ago` : ""}`);
      },
    },
    {
      queue: alertEmailQueue,
      retryLimit: 5,
      async run(ctx) {
        // Jobs queued before digests name one alert.
        const data = (ctx.data ?? {}) as { alertIds?: unknown; alertId?: unknown };
        const ids = (Array.isArray(data.alertIds) ? data.alertIds : [data.alertId]).map(Number).filter(Number.isSafeInteger);
        const alerts = await selectAlertsToEmail(db, ids);
        if (alerts.length === 0) return;
        const { route, recipients } = await readMailSettings(db, options.open);
        if (route.provider === "none") {
          await ctx.output("e-mail is not configured; the alert is shown in the console only");
          return;
        }
        const sending = alerts.map((a) => a.id);
        try {
          await sendMail(route, { to: recipients, ...alertEmail(alerts) });
        } catch (err) {
          await markAlertsEmailed(db, sending, (err as Error).message);
          throw err;
        }
        await markAlertsEmailed(db, sending);
        await ctx.output(`${sending.length === 1 ? "the alert" : `${sending.length} alerts in one message`} e-mailed to ${recipients.join(", ")}`);
      },
    },
  ];
}
