import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";

/** The shortest wait a refused caller is asked for, seconds (agents add jitter of their own). */
export const admissionRetryAfterSeconds = 5;
/** The longest: what an agent's backoff honours at most (agent/timing.ts retryCapMs). */
export const admissionRetryAfterMaxSeconds = 60;

/**
 * When the calls waiting are a backlog: at least `calls` of them, and either `calls` of them
 * pending for more than `waitMs`, or so many that at the rate calls are being answered the newest
 * would wait more than `waitMs`. A few slow calls (a large change set being planned) do not trip
 * it; a backlog does, and a young one before it has grown old.
 */
export interface QueueLimit {
  calls: number;
  waitMs: number;
}
export const defaultQueueLimit: QueueLimit = { calls: 256, waitMs: 5000 };

/** Refusing ends (and the log says so) once this long has passed without a refusal. */
const quietMs = 5000;
/**
 * The answer rate says what the listener can do only once it has been busy this long: measured
 * over a quiet moment it is what was asked of it, and a herd arriving at a lightly loaded replica
 * would be refused for the small rate it had been answering (seen: 1,000 agents moving to the
 * surviving replica told to come back over 25 s instead of being taken on in a few).
 */
const busyForMs = 1000;

/**
 * Admission control. Counts the calls taken on and not yet answering (in arrival order); a new
 * call is refused when `maxPendingCalls` are pending, or when the backlog is too long (QueueLimit;
 * the answer rate it uses is the one measured while the listener has been busy, `busyForMs`):
 * under a thundering herd the panel answers at once "come back later" instead of letting every
 * call wait until it times out.
 *
 * The refused are not all told the same "5 s": told alike, they all come back together, find the
 * panel busy again, and the panel swings between refusing everyone and taking on more than it can
 * answer (seen with 10,000 agents reconnecting after a restart). Each refusal is given the next
 * free slot of a schedule paced at the rate calls are being answered (at least 5 s away, at most
 * 60 s), so the refused come back about as fast as the panel can take them.
 *
 * The log says when refusing starts and, with how many were refused, when it has ended (5 s
 * without a refusal) — one line each, not one per call nor one each time the backlog dips under
 * the limit for a moment. `now` (ms, monotonic) is for tests.
 */
export function createAdmission(options: { maxPendingCalls?: number; queueLimit?: QueueLimit; onRefused?: () => void; log: Logger; now?: () => number }) {
  const limit = options.maxPendingCalls ?? Number.POSITIVE_INFINITY;
  const queue = options.queueLimit ?? defaultQueueLimit;
  const now = options.now ?? (() => performance.now());
  // The answer rate is never taken to be less than this: `queue.calls` within `queue.waitMs`.
  const floorRatePerMs = queue.calls / queue.waitMs;
  // Start times by call, oldest first (a Map keeps insertion order; answered calls leave it).
  const pending = new Map<number, number>();
  let nextId = 0;
  let refusedSinceStart = 0;
  let lastRefusedAt = Number.NEGATIVE_INFINITY;
  let backlogCheckedAt = Number.NEGATIVE_INFINITY;
  let oldBacklog = false;
  // Calls answered so far; and since when `queue.calls` or more have been pending, with the count then.
  let answered = 0;
  let busy: { since: number; answered: number } | undefined;
  // When the next refused caller is asked to come back (ms on `now`'s clock).
  let nextSlot = Number.NEGATIVE_INFINITY;

  /** Notes whether the listener is busy: from `queue.calls` pending until under half of that. */
  const watchBusy = (at: number) => {
    if (busy === undefined && pending.size >= queue.calls) busy = { since: at, answered };
    else if (busy !== undefined && pending.size < queue.calls / 2) busy = undefined;
  };
  /** Calls answered per ms while busy, once it has been busy `busyForMs`; undefined before. */
  const busyRatePerMs = (at: number) => (busy !== undefined && at - busy.since >= busyForMs ? (answered - busy.answered) / (at - busy.since) : undefined);
  /** How long the newest call would wait at the rate a busy listener answers, ms; undefined when it has not been busy long enough to say. */
  const expectedWaitMs = (at: number) => {
    const rate = busyRatePerMs(at);
    return rate === undefined ? undefined : pending.size / Math.max(rate, floorRatePerMs);
  };
  /** Whether `queue.calls` calls have waited longer than `queue.waitMs`; looked at no more than every 100 ms. */
  const backlogIsOld = (at: number) => {
    if (at - backlogCheckedAt < 100) return oldBacklog;
    backlogCheckedAt = at;
    oldBacklog = false;
    let n = 0;
    for (const started of pending.values()) {
      if (++n === queue.calls) {
        oldBacklog = at - started > queue.waitMs;
        break;
      }
    }
    return oldBacklog;
  };
  /** Why the calls waiting are a backlog, in words, or undefined when they are not. */
  const backlog = (at: number): string | undefined => {
    // Fewer calls pending than the rule counts: no backlog, whatever was seen a moment ago.
    if (pending.size < queue.calls) return undefined;
    if (backlogIsOld(at)) return `${pending.size} calls waiting, ${queue.calls} of them over ${queue.waitMs / 1000} s`;
    const waitMs = expectedWaitMs(at);
    if (waitMs !== undefined && waitMs > queue.waitMs) return `${pending.size} calls waiting, about ${(waitMs / 1000).toFixed(0)} s of work`;
    return undefined;
  };
  /** Logs the end of a spell of refusing, once it is over (called when a call is taken on or answered). */
  const refusingOver = (at: number) => {
    if (refusedSinceStart > 0 && at - lastRefusedAt >= quietMs) {
      options.log.info({ refused: refusedSinceStart, pending: pending.size }, "accepting new calls again");
      refusedSinceStart = 0;
    }
  };
  /** The next slot of the refused callers' schedule, in whole seconds from `at`. */
  const retryAfterSeconds = (at: number) => {
    const slot = Math.max(at + admissionRetryAfterSeconds * 1000, nextSlot);
    // The schedule goes at the answer rate: one refused caller back per answer the panel gives.
    nextSlot = Math.min(slot, at + admissionRetryAfterMaxSeconds * 1000) + 1 / Math.max(busyRatePerMs(at) ?? 0, floorRatePerMs);
    return Math.min(admissionRetryAfterMaxSeconds, Math.round((slot - at) / 1000));
  };
  return {
    /**
     * Answers the call's ticket when it may go on (it counts as pending until `release`), or the
     * refusal to answer it with.
     */
    admit(): { ticket: number } | { refusal: ConnectError } {
      const at = now();
      watchBusy(at);
      const why = pending.size >= limit ? `${pending.size} calls waiting` : backlog(at);
      if (why === undefined) {
        refusingOver(at);
        pending.set(nextId, at);
        watchBusy(at);
        return { ticket: nextId++ };
      }
      lastRefusedAt = at;
      if (refusedSinceStart++ === 0) {
        options.log.warn(
          { pending: pending.size, limit, queue, why },
          "overloaded: refusing new calls with a retry hint until the waiting ones are answered (RPC_MAX_PENDING_CALLS)",
        );
      }
      options.onRefused?.();
      const retryAfter = retryAfterSeconds(at);
      // Refusals come by the thousand when it is busiest, and a stack trace is most of an error's
      // cost (2.4 % of the panel's CPU in a profile of 10,000 agents): a refusal goes without one.
      const stackTraceLimit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      try {
        return {
          refusal: new ConnectError(
            `the panel is busy (${why}); try again in ${retryAfter} s`,
            Code.Unavailable,
            new Headers({ "retry-after": String(retryAfter) }),
          ),
        };
      } finally {
        Error.stackTraceLimit = stackTraceLimit;
      }
    },
    release(ticket: number) {
      if (!pending.delete(ticket)) return;
      const at = now();
      answered++;
      watchBusy(at);
      if (pending.size <= limit / 2 && backlog(at) === undefined) refusingOver(at);
    },
  };
}
