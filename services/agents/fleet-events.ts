import { createPgListener } from "../lib/pg-listener.js";
import type { Knex } from "../lib/db.js";
import type { Logger } from "../lib/log.js";
import { fleetEventChannel } from "./migrations/0010-fleet-events.js";

/** A fleet event as stored, with the tags its server has now (for scope checks). */
export interface FleetEventRow {
  id: string;
  /** `id` as a number, made once for every watcher to compare with its cursor. */
  seq: bigint;
  at: Date;
  kind: "server" | "instance" | "command" | "alert" | "install_job";
  server_id: string | null;
  data: Record<string, unknown>;
  tags: string[] | null;
}

/** How long events are kept: the window a watcher can resume in. */
export const fleetEventRetentionSeconds = 86400;

export async function selectFleetEventsAfter(db: Knex, afterId: string, limit: number): Promise<FleetEventRow[]> {
  const rows: Array<Omit<FleetEventRow, "seq">> = await db("fleet_events as e")
    .leftJoin("servers as s", "s.id", "e.server_id")
    .where("e.id", ">", afterId)
    .orderBy("e.id")
    .limit(limit)
    .select("e.id", "e.at", "e.kind", "e.server_id", "e.data", { tags: "s.tags" });
  return rows.map((r) => ({ ...r, seq: BigInt(r.id) }));
}

/** The newest event id (0 when there is none). */
export async function selectLastFleetEventId(db: Knex): Promise<string> {
  const row = await db("fleet_events").max<{ max: string | null }>("id as max").first();
  return row?.max ?? "0";
}

/** The oldest event still kept, if any. */
export async function selectOldestFleetEventId(db: Knex): Promise<string | undefined> {
  const row = await db("fleet_events").min<{ min: string | null }>("id as min").first();
  return row?.min ?? undefined;
}

export async function purgeFleetEvents(db: Knex, olderThanSeconds = fleetEventRetentionSeconds): Promise<number> {
  return db("fleet_events")
    .where("at", "<", db.raw("now() - make_interval(secs => ?)", [olderThanSeconds]))
    .delete();
}

/** Largest batch read at once; a burst larger than this is read in several. */
const batchSize = 2000;
/** A lost notification (a reconnect) is caught up with at the latest after this long. */
const pollIntervalMs = 5000;

/**
 * One LISTEN connection per process for every watcher of fleet events: a NOTIFY (or the poll that
 * covers lost ones) triggers one read of the events after the last one read, shared by all
 * watchers, which filter it each for their principal. Reads never overlap; notifications that
 * arrive during one are folded into the next.
 */
export function createFleetEventHub(db: Knex, url: string, log: Logger) {
  const subscribers = new Set<(rows: readonly FleetEventRow[]) => void>();
  let last: Promise<string> | undefined;
  let reading: Promise<void> | undefined;
  let again = false;
  let poll: NodeJS.Timeout | undefined;
  let stopped = false;
  let started = false;

  const head = () => (last ??= selectLastFleetEventId(db));
  const read = async () => {
    let after = await head();
    for (;;) {
      const rows = await selectFleetEventsAfter(db, after, batchSize);
      if (rows.length === 0) return;
      after = rows.at(-1)!.id;
      last = Promise.resolve(after);
      for (const deliver of subscribers) deliver(rows);
      if (rows.length < batchSize) return;
    }
  };
  const schedule = () => {
    if (stopped || subscribers.size === 0) return;
    if (reading) {
      again = true;
      return;
    }
    // No waiting window: a burst gathers by itself into the next read while one runs.
    reading = read()
      .catch((err: unknown) => log.warn({ err }, "could not read fleet events; the next notification or poll tries again"))
      .finally(() => {
        reading = undefined;
        if (again) {
          again = false;
          schedule();
        }
      });
  };
  const listener = createPgListener({ url, channel: fleetEventChannel, log, what: "fleet event notifications", onNotify: schedule, onConnect: schedule });

  return {
    /** The id of the newest event read (or in the table, before the first read). */
    head,
    /** Delivers every new event to `deliver`, in order, until the returned function is called. */
    subscribe(deliver: (rows: readonly FleetEventRow[]) => void): () => void {
      if (!started) {
        started = true;
        listener.start();
      }
      poll ??= setInterval(schedule, pollIntervalMs).unref();
      subscribers.add(deliver);
      return () => {
        subscribers.delete(deliver);
      };
    },
    async stop() {
      stopped = true;
      if (poll) clearInterval(poll);
      await reading;
      await listener.stop();
    },
  };
}

export type FleetEventHub = ReturnType<typeof createFleetEventHub>;
