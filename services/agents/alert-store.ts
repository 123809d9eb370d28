import type { Knex } from "../lib/db.js";
import type { BusySpell } from "../lib/admission.js";
import type { ServerScope } from "../lib/principal.js";
import { whereInScope } from "./fleet-store.js";

/** Alerts as the operator API reads and acknowledges them. */

export interface AlertRow {
  id: string;
  server_id: string | null;
  server_name: string | null;
  kind: string;
  message: string;
  raised_at: Date;
  emailed_at: Date | null;
  email_error: string | null;
  acknowledged_at: Date | null;
  acknowledged_by: string | null;
}

export interface AlertFilter {
  serverId?: string;
  kinds?: readonly string[];
  unacknowledgedOnly?: boolean;
}

function alertsInScope(db: Knex, scope: ServerScope, filter: AlertFilter) {
  const query = whereInScope(db("alerts as a").join("servers as servers", "servers.id", "a.server_id"), scope);
  if (filter.serverId) query.where("a.server_id", filter.serverId);
  if (filter.kinds?.length) query.whereIn("a.kind", [...filter.kinds]);
  if (filter.unacknowledgedOnly) query.whereNull("a.acknowledged_at");
  return query;
}

/** A page of alerts, newest first, before the cursor id. */
export async function selectAlertPage(db: Knex, scope: ServerScope, filter: AlertFilter, limit: number, beforeId?: string): Promise<AlertRow[]> {
  const query = alertsInScope(db, scope, filter).orderBy("a.id", "desc").limit(limit).select("a.*", { server_name: "servers.name" });
  if (beforeId !== undefined) query.where("a.id", "<", beforeId);
  return query;
}

export async function countUnacknowledged(db: Knex, scope: ServerScope): Promise<number> {
  const [row] = await alertsInScope(db, scope, { unacknowledgedOnly: true }).count<Array<{ n: string }>>({ n: "*" });
  return Number(row?.n ?? 0);
}

/** Acknowledges the alerts of `ids` in scope not yet acknowledged; answers their ids. */
export async function acknowledgeAlerts(db: Knex, scope: ServerScope, ids: readonly string[], by: string): Promise<string[]> {
  const visible = alertsInScope(db, scope, {})
    .whereIn("a.id", [...ids])
    .select("a.id");
  const rows = await db("alerts")
    .whereIn("id", visible)
    .whereNull("acknowledged_at")
    .update({ acknowledged_at: db.fn.now(), acknowledged_by: by })
    .returning("id");
  return rows.map((r: { id: string | number }) => String(r.id));
}

/** Missed heartbeats before unreachable, when an operator set it. */
export async function selectMissedHeartbeats(db: Knex): Promise<number | undefined> {
  const row = await db("liveness_settings").where({ singleton: true }).first("missed_heartbeats");
  return row?.missed_heartbeats;
}

export async function upsertMissedHeartbeats(db: Knex, missed: number): Promise<void> {
  await db("liveness_settings")
    .insert({ singleton: true, missed_heartbeats: missed })
    .onConflict("singleton")
    .merge({ missed_heartbeats: missed, updated_at: db.fn.now() });
}

/** Stores where a spell of refusing calls stands (one row per spell, written again as it goes on). */
export async function upsertBusySpell(db: Knex, id: string, spell: BusySpell): Promise<void> {
  await db("panel_busy_spells")
    .insert({ id, started_at: spell.startedAt, last_refused_at: spell.lastRefusedAt, refused: spell.refused, over: spell.over })
    .onConflict("id")
    .merge({
      last_refused_at: db.raw("greatest(panel_busy_spells.last_refused_at, excluded.last_refused_at)"),
      refused: db.raw("greatest(panel_busy_spells.refused, excluded.refused)"),
      over: db.raw("panel_busy_spells.over or excluded.over"),
    });
}

/** The spells of refusing calls, of every process, that were still going on `withinSeconds` ago. */
export async function selectBusySpells(db: Knex, withinSeconds: number): Promise<Array<{ started_at: Date; last_refused_at: Date }>> {
  return db("panel_busy_spells")
    .where("last_refused_at", ">", db.raw("now() - make_interval(secs => ?)", [withinSeconds]))
    .select("started_at", "last_refused_at");
}

/** Deletes the spells over for longer than `olderThanSeconds`; answers how many. */
export async function purgeBusySpells(db: Knex, olderThanSeconds: number): Promise<number> {
  return db("panel_busy_spells")
    .where("last_refused_at", "<", db.raw("now() - make_interval(secs => ?)", [olderThanSeconds]))
    .delete();
}

/** The stored mail route without opening a secret: what GetEmailSettings answers. */
export async function selectEmailSettings(db: Knex): Promise<Record<string, unknown> | undefined> {
  return db("email_settings").where({ singleton: true }).first();
}
