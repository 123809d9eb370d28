/**
 * Gathers items for a short window and hands them to one `write` call (one statement for many
 * requests: writes, or reads), and settles each caller's promise with its own outcome once that
 * call finished. Batches run one at a time, in order.
 */
export function createBatcher<T, R>(options: {
  /** Writes a batch; answers one outcome per item, in order (an Error is that item's failure). */
  write(items: T[]): Promise<Array<R | Error>>;
  windowMs: number;
  maxItems: number;
}) {
  let pending: Array<{ item: T; resolve(r: R): void; reject(e: unknown): void }> = [];
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> = Promise.resolve();
  let stopped = false;

  const flush = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const batch = pending;
    pending = [];
    if (batch.length === 0) return inFlight;
    inFlight = inFlight.then(async () => {
      try {
        const outcomes = await options.write(batch.map((b) => b.item));
        batch.forEach((b, i) => {
          const outcome = outcomes[i];
          if (outcome instanceof Error) b.reject(outcome);
          else b.resolve(outcome as R);
        });
      } catch (err) {
        for (const b of batch) b.reject(err);
      }
    });
    return inFlight;
  };

  return {
    /** Resolves with the item's outcome once its batch was written. */
    write(item: T): Promise<R> {
      if (stopped) return Promise.reject(new Error("the panel is shutting down"));
      return new Promise<R>((resolve, reject) => {
        pending.push({ item, resolve, reject });
        if (pending.length >= options.maxItems) void flush();
        else timer ??= setTimeout(flush, options.windowMs);
      });
    },
    /** Writes what waits and refuses new items. */
    async stop(): Promise<void> {
      stopped = true;
      await flush();
    },
  };
}
