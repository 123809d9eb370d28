import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";

/** Seconds a refused caller is asked to wait before trying again (agents add jitter of their own). */
export const admissionRetryAfterSeconds = 5;

/**
 * When calls count as queued too long: at least `calls` of them pending for more than `waitMs`.
 * A few slow calls (a large change set being planned) do not trip it; a backlog does.
 */
export interface QueueLimit {
  calls: number;
  waitMs: number;
}
export const defaultQueueLimit: QueueLimit = { calls: 256, waitMs: 5000 };

/**
 * Admission control. Counts the calls taken on and not yet answering (in arrival order); a new
 * call is refused when `maxPendingCalls` are pending, or when the backlog is old (QueueLimit):
 * under a thundering herd the panel answers at once "come back in 5 s" instead of letting every
 * call wait until it times out. The log says when refusing starts and, with how many were refused,
 * when it ends — one line each, not one per call.
 */
export function createAdmission(options: { maxPendingCalls?: number; queueLimit?: QueueLimit; onRefused?: () => void; log: Logger }) {
  const limit = options.maxPendingCalls ?? Number.POSITIVE_INFINITY;
  const queue = options.queueLimit ?? defaultQueueLimit;
  // Start times by call, oldest first (a Map keeps insertion order; answered calls leave it).
  const pending = new Map<number, number>();
  let nextId = 0;
  let refusedSinceStart = 0;
  let backlogCheckedAt = Number.NEGATIVE_INFINITY;
  let backlog = false;
  /** Whether `queue.calls` calls have waited longer than `queue.waitMs`; looked at no more than every 100 ms. */
  const oldBacklog = (now: number) => {
    // Fewer calls pending than the rule counts: no backlog, whatever was seen a moment ago.
    if (pending.size < queue.calls) return false;
    if (now - backlogCheckedAt < 100) return backlog;
    backlogCheckedAt = now;
    backlog = false;
    let n = 0;
    for (const started of pending.values()) {
      if (++n === queue.calls) {
        backlog = now - started > queue.waitMs;
        break;
      }
    }
    return backlog;
  };
  return {
    /**
     * Answers the call's ticket when it may go on (it counts as pending until `release`), or the
     * refusal to answer it with.
     */
    admit(): { ticket: number } | { refusal: ConnectError } {
      const now = performance.now();
      const full = pending.size >= limit;
      if (!full && !oldBacklog(now)) {
        pending.set(nextId, now);
        return { ticket: nextId++ };
      }
      const why = full ? `${pending.size} calls waiting` : `${pending.size} calls waiting, ${queue.calls} of them over ${queue.waitMs / 1000} s`;
      if (refusedSinceStart++ === 0) {
        options.log.warn(
          { pending: pending.size, limit, queue },
          "overloaded: refusing new calls with a retry hint until the waiting ones are answered (RPC_MAX_PENDING_CALLS)",
        );
      }
      options.onRefused?.();
      return {
        refusal: new ConnectError(
          `the panel is busy (${why}); try again in ${admissionRetryAfterSeconds} s`,
          Code.Unavailable,
          new Headers({ "retry-after": String(admissionRetryAfterSeconds) }),
        ),
      };
    },
    release(ticket: number) {
      pending.delete(ticket);
      if (refusedSinceStart > 0 && !oldBacklog(performance.now()) && pending.size <= limit / 2) {
        options.log.info({ refused: refusedSinceStart, pending: pending.size }, "accepting new calls again");
        refusedSinceStart = 0;
      }
    },
  };
}
