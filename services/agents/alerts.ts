import type { Knex } from "../lib/db.js";
import { sendMail } from "../lib/email/send.js";
import { readMailSettings, type OpenSecret } from "../lib/email/settings.js";
import type { JobDefinition } from "../lib/jobs/runner.js";
import { selectMissedHeartbeats } from "./alert-store.js";
import { insertAlerts, markAlertEmailed, markUnreachable, selectAlert } from "./store.js";

/** Queue of the alert e-mails: one job per alert, retried by the queue. */
export const alertEmailQueue = "agents.alert-email";
/** Queue of the liveness scan. */
export const livenessQueue = "agents.liveness";

export type Enqueue = (queue: string, data?: Record<string, unknown>) => Promise<string>;

/** Stores alerts (rows for the console) and queues one e-mail each. */
export async function raiseAlerts(db: Knex, enqueue: Enqueue, alerts: ReadonlyArray<{ serverId: string; kind: string; message: string }>): Promise<void> {
  const ids = await insertAlerts(db, alerts);
  for (const id of ids) await enqueue(alertEmailQueue, { alertId: id });
}

export async function raiseRecoveries(db: Knex, enqueue: Enqueue, servers: ReadonlyArray<{ id: string; name: string }>): Promise<void> {
  await raiseAlerts(
    db,
    enqueue,
    servers.map((s) => ({ serverId: s.id, kind: "server_recovered", message: `server ${s.name} is reachable again: its agent sent a heartbeat` })),
  );
}

/**
 * Marks servers silent for `missed` heartbeat intervals unreachable and raises one alert each.
 * The conditional UPDATE returns a server only on its transition, so an outage raises exactly one
 * alert however often (and on however many replicas) the scan runs.
 */
export async function scanLiveness(db: Knex, enqueue: Enqueue, intervalSeconds: number, missed: number): Promise<number> {
  const silent = await markUnreachable(db, intervalSeconds * missed);
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
        await ctx.output(`${count} servers became unreachable`);
      },
    },
    {
      queue: alertEmailQueue,
      retryLimit: 5,
      async run(ctx) {
        const alertId = Number((ctx.data as { alertId?: unknown } | null)?.alertId);
        const alert = await selectAlert(db, alertId);
        if (!alert || alert.emailed_at) return;
        const { route, recipients } = await readMailSettings(db, options.open);
        if (route.provider === "none") {
          await ctx.output("e-mail is not configured; the alert is shown in the console only");
          return;
        }
        try {
          await sendMail(route, {
            to: recipients,
            subject: `[MyOsicam] ${alert.message.split(":")[0]}`,
            text: `${alert.message}\n\nRaised at ${new Date(alert.raised_at).toISOString()}.\n`,
          });
        } catch (err) {
          await markAlertEmailed(db, alertId, (err as Error).message);
          throw err;
        }
        await markAlertEmailed(db, alertId);
        await ctx.output(`e-mailed to ${recipients.join(", ")}`);
      },
    },
  ];
}
