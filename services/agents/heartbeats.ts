import { createBatcher } from "../lib/batcher.js";
import { heartbeatBatchSize, heartbeatWriteSeconds } from "../lib/metrics.js";
import type { DatabaseOutage } from "../lib/database-outage.js";
import { queryErrorWords, type Knex } from "../lib/db.js";
import type { Logger } from "../lib/log.js";
import { writeHeartbeats, type HeartbeatWrite } from "./store.js";

/**
 * How long heartbeats gather before one statement writes them all (well under DESIGN's 2 s). Every
 * heartbeat waits for it, so it is most of a heartbeat's latency when the panel is quiet; under
 * load, heartbeats arriving while one batch is written go into the next anyway (group commit).
 * 50 ms gave p50 ≈ 60 ms, p99 ≈ 88 ms with 1,000 agents (docs/sizing.md).
 */
export const heartbeatBatchMs = 20;
/** A batch is written at once when it reaches this size. */
export const heartbeatBatchMax = 1000;

/**
 * Coalesces heartbeat writes: every heartbeat of a short window is written by one statement, and
 * each caller's promise settles only once its heartbeat is committed — so an accepted heartbeat is
 * never lost, and `last_seen_at` trails it by at most the window plus one write. Of two heartbeats
 * of one server in a window the later is written; both callers wait for it.
 */
export function createHeartbeatWriter(
  db: Knex,
  log: Logger,
  onRecovered: (servers: Array<{ id: string; name: string }>) => Promise<void>,
  databaseOutage?: Pick<DatabaseOutage, "notice">,
) {
  const writer = createBatcher<HeartbeatWrite, void>({
    windowMs: heartbeatBatchMs,
    maxItems: heartbeatBatchMax,
    async write(beats) {
      const latest = new Map(beats.map((b) => [b.serverId, b]));
      heartbeatBatchSize.observe(latest.size);
      try {
        const timer = heartbeatWriteSeconds.startTimer();
        const recovered = await writeHeartbeats(db, [...latest.values()]);
        timer();
        if (recovered.length > 0) await onRecovered(recovered).catch((err: unknown) => log.error({ err }, "could not raise recovery alerts"));
      } catch (err) {
        // An unreachable database is logged once per outage; every caller is answered Unavailable.
        if (!databaseOutage?.notice(err)) log.error({ reason: queryErrorWords(err), heartbeats: latest.size }, "could not write heartbeats; agents will retry");
        throw err;
      }
      return beats.map(() => undefined);
    },
  });
  return {
    /** Resolves once the heartbeat is committed. */
    record: (beat: HeartbeatWrite) => writer.write(beat),
    /** Writes what is waiting and refuses new heartbeats. */
    stop: () => writer.stop(),
  };
}

export type HeartbeatWriter = ReturnType<typeof createHeartbeatWriter>;
