import { isBatchWideFailure } from "./errors.js";

/**
 * Gathers items and hands them to one `write` call (one statement for many requests: writes, or
 * reads), and settles each caller's promise with its own outcome once that call finished. Batches
 * run one at a time, in order; a batch takes what waits when its turn comes, so under load the
 * items that arrive while one batch is written go together into the next (group commit).
 *
 * When a batch fails as a whole, its items are written one by one, so that an item the database
 * refuses fails alone (test: batcher.test.ts) — unless the failure is no item's doing (the
 * database unreachable or its pool taken, a deadlock, a timeout): then every item fails with it at
 * once. Written one by one, a thousand heartbeats each waiting out the pool's acquire timeout
 * would hold every later batch for hours.
 *
 * `windowMs` 0: a batch starts on the next turn of the event loop (no added wait when idle);
 * more than 0: items gather that long first (fewer writes, e.g. heartbeats).
 */
export function createBatcher<T, R>(options: {
  /** Handles a batch; answers one outcome per item, in order (an Error is that item's failure). */
  write(items: T[]): Promise<Array<R | Error>>;
  windowMs: number;
  maxItems: number;
}) {
  const pending: Array<{ item: T; resolve(r: R): void; reject(e: unknown): void }> = [];
  let scheduled: (() => void) | undefined;
  let inFlight: Promise<void> = Promise.resolve();
  let stopped = false;

  const step = async () => {
    const batch = pending.splice(0, options.maxItems);
    if (batch.length === 0) return;
    try {
      settle(batch, await options.write(batch.map((b) => b.item)));
    } catch (err) {
      if (batch.length === 1 || isBatchWideFailure(err)) {
        for (const b of batch) b.reject(err);
        return;
      }
      // One item the database refused must not fail its neighbours: each is tried alone, so only
      // the offender fails (and a database that is down fails each of them quickly).
      for (const b of batch) {
        try {
          settle([b], await options.write([b.item]));
        } catch (alone) {
          b.reject(alone);
        }
      }
    }
  };
  const settle = (batch: typeof pending, outcomes: Array<R | Error>) => {
    batch.forEach((b, i) => {
      const outcome = outcomes[i];
      if (outcome instanceof Error) b.reject(outcome);
      else b.resolve(outcome as R);
    });
  };
  const flush = () => {
    scheduled?.();
    scheduled = undefined;
    inFlight = inFlight.then(step);
    return inFlight;
  };
  const schedule = () => {
    if (options.windowMs > 0) {
      const timer = setTimeout(flush, options.windowMs);
      scheduled = () => clearTimeout(timer);
    } else {
      const immediate = setImmediate(flush);
      scheduled = () => clearImmediate(immediate);
    }
  };

  return {
    /** Resolves with the item's outcome once its batch was handled. */
    write(item: T): Promise<R> {
      if (stopped) return Promise.reject(new Error("the panel is shutting down"));
      return new Promise<R>((resolve, reject) => {
        pending.push({ item, resolve, reject });
        if (pending.length >= options.maxItems) void flush();
        else if (!scheduled) schedule();
      });
    },
    /** Handles what waits and refuses new items. */
    async stop(): Promise<void> {
      stopped = true;
      while (pending.length > 0) await flush();
      await inFlight;
    },
  };
}
