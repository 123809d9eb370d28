import type { Knex } from "./db.js";
import { isDatabaseUnavailable } from "./errors.js";
import type { Logger } from "./log.js";

/**
 * One log line when a database becomes unreachable and one when it is back, instead of a line per
 * refused call and per failed batch: while it is down, every call that needs it is answered
 * `Unavailable`, and an operator needs to read that once, with how long it lasted.
 */
export interface DatabaseOutage {
  /**
   * Tells of an error. Answers true when it says a database is unreachable: the first such error
   * of an outage is logged (warn) and the outage watched until every database answers again (then
   * one info line); the caller logs nothing more than debug. False for any other error.
   */
  notice(err: unknown): boolean;
  /** Whether an outage is going on. */
  readonly down: boolean;
  stop(): void;
}

export function createDatabaseOutage(options: {
  log: Logger;
  /** The databases to probe (`select 1`) until they answer again. */
  databases: ReadonlyArray<{ name: string; db: Knex }>;
  probeIntervalMs?: number;
}): DatabaseOutage {
  const probeIntervalMs = options.probeIntervalMs ?? 1000;
  let since: number | undefined;
  let refused = 0;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const probe = async () => {
    timer = undefined;
    if (stopped || since === undefined) return;
    const failing: string[] = [];
    for (const { name, db } of options.databases) {
      await db.raw("select 1").catch(() => failing.push(name));
    }
    if (failing.length > 0) {
      timer = setTimeout(probe, probeIntervalMs);
      timer.unref();
      return;
    }
    options.log.info({ outageSeconds: Math.round((performance.now() - since) / 1000), refused }, "the database answers again; calls are served as before");
    since = undefined;
    refused = 0;
  };

  return {
    notice(err) {
      if (!isDatabaseUnavailable(err)) return false;
      refused++;
      if (since === undefined && !stopped) {
        since = performance.now();
        options.log.warn(
          { reason: err instanceof Error ? err.message : String(err) },
          "the database cannot be reached; calls that need it are answered Unavailable until it is back (one line now, one when it is back)",
        );
        timer = setTimeout(probe, probeIntervalMs);
        timer.unref();
      }
      return true;
    },
    get down() {
      return since !== undefined;
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
