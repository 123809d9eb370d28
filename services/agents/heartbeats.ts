import type { Knex } from "../lib/db.js";
import type { Logger } from "../lib/log.js";
import { writeHeartbeats, type HeartbeatWrite } from "./store.js";

/** How long heartbeats gather before one statement writes them all (well under DESIGN's 2 s). */
export const heartbeatBatchMs = 50;
/** A batch is written at once when it reaches this size. */
export const heartbeatBatchMax = 1000;

/**
 * Coalesces heartbeat writes: every heartbeat of a short window is written by one UPDATE, and each
 * caller's promise settles only once its heartbeat is committed — so an accepted heartbeat is
 * never lost, and `last_seen_at` trails it by at most the window plus one write.
 */
export function createHeartbeatWriter(db: Knex, log: Logger, onRecovered: (servers: Array<{ id: string; name: string }>) => Promise<void>) {
  let pending = new Map<string, { beat: HeartbeatWrite; waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> }>();
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> = Promise.resolve();
  let stopped = false;

  const flush = () => {
    timer = undefined;
    const batch = pending;
    pending = new Map();
    if (batch.size === 0) return inFlight;
    // One write at a time keeps `last_seen_at` moving forward in order.
    inFlight = inFlight.then(async () => {
      try {
        const recovered = await writeHeartbeats(db, [...batch.values()].map((e) => e.beat));
        for (const entry of batch.values()) for (const w of entry.waiters) w.resolve();
        if (recovered.length > 0) await onRecovered(recovered).catch((err: unknown) => log.error({ err }, "could not raise recovery alerts"));
      } catch (err) {
        log.error({ err, heartbeats: batch.size }, "could not write heartbeats; agents will retry");
        for (const entry of batch.values()) for (const w of entry.waiters) w.reject(err);
      }
    });
    return inFlight;
  };

  return {
    /** Resolves once the heartbeat is committed. */
    record(beat: HeartbeatWrite): Promise<void> {
      if (stopped) return Promise.reject(new Error("the panel is shutting down"));
      return new Promise<void>((resolve, reject) => {
        const entry = pending.get(beat.serverId);
        // A newer heartbeat of the same server replaces the older one in the batch; both callers wait for it.
        if (entry) {
          entry.beat = beat;
          entry.waiters.push({ resolve, reject });
        } else pending.set(beat.serverId, { beat, waiters: [{ resolve, reject }] });
        if (pending.size >= heartbeatBatchMax) {
          if (timer) clearTimeout(timer);
          void flush();
        } else timer ??= setTimeout(flush, heartbeatBatchMs);
      });
    },
    /** Writes what is waiting and refuses new heartbeats. */
    async stop(): Promise<void> {
      stopped = true;
      if (timer) clearTimeout(timer);
      await flush();
    },
  };
}

export type HeartbeatWriter = ReturnType<typeof createHeartbeatWriter>;
