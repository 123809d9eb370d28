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

/** Refusing is over (and the log says so) once this long has passed without a refusal. */
const quietMs = 5000;
/** How often `onSpell` hears of a spell of refusing that goes on. */
const spellReportMs = 5000;

/**
 * A spell of refusing: from the first refusal to the last one so far (ms, in admission's clock),
 * and whether it is over (`quietMs` without a refusal since). Whoever judges agents by their
 * silence needs it: while the panel turns calls away, a quiet agent may just have been refused.
 */
export interface RefusalSpell {
  startedAt: number;
  lastRefusedAt: number;
  refused: number;
  over: boolean;
}

/** A RefusalSpell on the wall clock, for what outlives the process (a database row, another replica). */
export interface BusySpell extends Omit<RefusalSpell, "startedAt" | "lastRefusedAt"> {
  startedAt: Date;
  lastRefusedAt: Date;
}

/** A spell timed with admission's default clock, `performance.now()`, on the wall clock. */
export function busySpellOf(spell: RefusalSpell): BusySpell {
  const wall = (ms: number) => new Date(performance.timeOrigin + ms);
  return { ...spell, startedAt: wall(spell.startedAt), lastRefusedAt: wall(spell.lastRefusedAt) };
}

/**
 * Admission control. Counts the calls taken on and not yet answering (in arrival order); a new
 * call is refused when `maxPendingCalls` are pending, or when the backlog is old (QueueLimit):
 * under a thundering herd the panel answers at once "come back in 5 s" instead of letting every
 * call wait until it times out. The log says when refusing starts and, with how many were
 * refused, when it is over (5 s without a refusal) — one line each, not one per call nor one each
 * time the backlog dips under the limit for a moment. `now` (ms, monotonic) is for tests.
 */
export function createAdmission(options: {
  maxPendingCalls?: number;
  queueLimit?: QueueLimit;
  onRefused?: () => void;
  /** Told when a spell of refusing starts, every 5 s while it goes on (at a refusal), and when it is over. */
  onSpell?: (spell: RefusalSpell) => void;
  log: Logger;
  now?: () => number;
}) {
  const limit = options.maxPendingCalls ?? Number.POSITIVE_INFINITY;
  const queue = options.queueLimit ?? defaultQueueLimit;
  const now = options.now ?? (() => performance.now());
  // Start times by call, oldest first (a Map keeps insertion order; answered calls leave it).
  const pending = new Map<number, number>();
  let nextId = 0;
  let refusedSinceStart = 0;
  let spellStartedAt = Number.NEGATIVE_INFINITY;
  let spellReportedAt = Number.NEGATIVE_INFINITY;
  let lastRefusedAt = Number.NEGATIVE_INFINITY;
  const reportSpell = (over: boolean) => {
    spellReportedAt = lastRefusedAt;
    options.onSpell?.({ startedAt: spellStartedAt, lastRefusedAt, refused: refusedSinceStart, over });
  };
  let backlogCheckedAt = Number.NEGATIVE_INFINITY;
  let backlog = false;
  /** Whether `queue.calls` calls have waited longer than `queue.waitMs`; looked at no more than every 100 ms. */
  const oldBacklog = (at: number) => {
    // Fewer calls pending than the rule counts: no backlog, whatever was seen a moment ago.
    if (pending.size < queue.calls) return false;
    if (at - backlogCheckedAt < 100) return backlog;
    backlogCheckedAt = at;
    backlog = false;
    let n = 0;
    for (const started of pending.values()) {
      if (++n === queue.calls) {
        backlog = at - started > queue.waitMs;
        break;
      }
    }
    return backlog;
  };
  /** Logs the end of a spell of refusing, once it is over (looked at when a call is taken on or answered). */
  const refusingOver = (at: number) => {
    if (refusedSinceStart > 0 && at - lastRefusedAt >= quietMs) {
      options.log.info({ refused: refusedSinceStart, pending: pending.size }, "accepting new calls again");
      reportSpell(true);
      refusedSinceStart = 0;
    }
  };
  return {
    /**
     * Answers the call's ticket when it may go on (it counts as pending until `release`), or the
     * refusal to answer it with.
     */
    admit(): { ticket: number } | { refusal: ConnectError } {
      const at = now();
      const full = pending.size >= limit;
      if (!full && !oldBacklog(at)) {
        refusingOver(at);
        pending.set(nextId, at);
        return { ticket: nextId++ };
      }
      lastRefusedAt = at;
      const why = full ? `${pending.size} calls waiting` : `${pending.size} calls waiting, ${queue.calls} of them over ${queue.waitMs / 1000} s`;
      if (refusedSinceStart++ === 0) {
        options.log.warn(
          { pending: pending.size, limit, queue },
          "overloaded: refusing new calls with a retry hint until the waiting ones are answered (RPC_MAX_PENDING_CALLS)",
        );
        spellStartedAt = at;
        reportSpell(false);
      } else if (at - spellReportedAt >= spellReportMs) reportSpell(false);
      options.onRefused?.();
      // Refusals come by the thousand when it is busiest, and a stack trace is most of an error's
      // cost (2.4 % of the panel's CPU in a profile at 10,000 agents): a refusal goes without one.
      const stackTraceLimit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      try {
        return {
          refusal: new ConnectError(
            `the panel is busy (${why}); try again in ${admissionRetryAfterSeconds} s`,
            Code.Unavailable,
            new Headers({ "retry-after": String(admissionRetryAfterSeconds) }),
          ),
        };
      } finally {
        Error.stackTraceLimit = stackTraceLimit;
      }
    },
    release(ticket: number) {
      if (!pending.delete(ticket)) return;
      const at = now();
      if (pending.size <= limit / 2 && !oldBacklog(at)) refusingOver(at);
    },
  };
}
