import type { Logger } from "pino";

export interface ShutdownOptions {
  /** The ordered stop of everything the process started; bounded by its own deadlines. */
  stop: () => Promise<void>;
  log: Logger;
  /** After this long the process exits 1 whatever is still running. */
  hardDeadlineMs: number;
  exit?: (code: number) => void;
}

/** How soon after the first signal a copy of it counts as the same one (see onSignal). */
const duplicateWindowMs = 1000;

/**
 * First SIGINT/SIGTERM: graceful stop, then exit 0 (1 when stopping failed). A second signal, or
 * the hard deadline, exits 1 at once.
 */
export function exitOnSignals(options: ShutdownOptions): void {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  let stopping = false;
  let first: { signal: NodeJS.Signals; atMs: number; echoSeen: boolean } | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    // Ctrl+C signals the terminal's whole process group, and `npm start` also forwards that same
    // signal to us: one copy of the first signal arriving right after it is one keypress, not two
    // (test: "Ctrl+C through npm start stops everything and exits 0").
    const nowMs = performance.now();
    if (first && !first.echoSeen && signal === first.signal && nowMs - first.atMs < duplicateWindowMs) {
      first.echoSeen = true;
      return;
    }
    if (stopping) {
      options.log.warn({ signal }, "second signal: exiting without waiting");
      exit(1);
      return;
    }
    stopping = true;
    first = { signal, atMs: nowMs, echoSeen: false };
    options.log.info({ signal }, "stopping");
    setTimeout(() => {
      options.log.error({ deadlineMs: options.hardDeadlineMs }, "stop took too long: exiting");
      exit(1);
    }, options.hardDeadlineMs).unref();
    options.stop().then(
      () => exit(0),
      (err) => {
        options.log.error({ err }, "stop failed");
        exit(1);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}
