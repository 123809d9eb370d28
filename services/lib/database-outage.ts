import { ConnectError } from "@connectrpc/connect";
import { poolState, queryErrorWords, type Knex } from "./db.js";
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
        const cause = underlyingReason(err);
        if (poolTimeout.test(cause)) {
          options.log.warn(
            { reason: cause, pools: options.databases.map(({ name, db }) => ({ database: name, ...poolState(db) })) },
            "every database connection stayed busy; calls that need one are answered Unavailable until one is free (one line now, one when they are free)",
          );
        } else {
          options.log.warn(
            { reason: cause },
            "the database cannot be reached; calls that need it are answered Unavailable until it is back (one line now, one when it is back)",
          );
        }
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

/**
 * What actually failed, in its own words: the first error under our translation (a ConnectError
 * keeps the original as its cause); an AggregateError (a connect attempt to several addresses)
 * by its parts' messages.
 */
function underlyingReason(err: unknown): string {
  let e = err;
  for (let depth = 0; depth < 5 && e instanceof ConnectError && e.cause !== undefined; depth++) e = e.cause;
  if (e instanceof AggregateError && !e.message) return e.errors.map((inner) => (inner instanceof Error ? inner.message : String(inner))).join("; ");
  return queryErrorWords(e);
}

const poolTimeout = /^Knex: Timeout acquiring a connection/;
