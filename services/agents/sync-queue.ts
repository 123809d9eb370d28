import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import pLimit from "p-limit";
import { AgentService } from "../../gen/myosicam/agent/v1/agent_pb.js";
import type { Logger } from "../lib/log.js";

/**
 * Syncs stored at once; the others wait their turn in memory. A sync holds a pool connection for its
 * whole transaction (a first snapshot of a few thousand accounts takes a while): without a limit,
 * 5,000 agents enrolling at once took all 10, and registrations waited a minute for one and timed
 * out (4,244 deadline_exceeded, "database unavailable"); with it, they were refused early with a
 * retry hint instead (5 timed out). docs/sizing.md.
 */
export const maxConcurrentSyncs = 4;

/**
 * Syncs that may wait for their turn; past that, a sync is refused at once with a retry hint (the
 * agent retries no sooner). When 10,000 agents enrolled at once, first snapshots (and
 * registrations) queued by the thousand as pending calls, the backlog tripped the panel's
 * admission, and every call — heartbeats of agents already enrolled among them — was refused for
 * minutes. Bounded here (registrations too), a backlog of syncs is refused alone, and admission
 * control leaves syncs to this queue (ServiceModule.ownQueues). At ≈25 first snapshots a second,
 * 64 waiting is a wait of a few seconds.
 */
export const maxQueuedSyncs = 64;
const syncRetryAfterSeconds = 5;

/** The syncs of one panel process: at most `maxConcurrentSyncs` being stored, `maxQueuedSyncs` waiting. */
export interface SyncQueue {
  /** Stores a sync in its turn. */
  run<T>(store: () => Promise<T>): Promise<T>;
  /** Why a sync must be refused now (the queue is full), or undefined. */
  refusal(): ConnectError | undefined;
}

/**
 * A queue that says when it starts refusing and when it has room again (with how many it refused
 * meanwhile), rather than a line per refusal: an enrolment burst of 10,000 agents was refused
 * 22,000 times.
 */
export function createSyncQueue(log: Logger): SyncQueue {
  const limit = pLimit(maxConcurrentSyncs);
  let refused = 0;
  return {
    run: (store) => limit(store),
    refusal() {
      if (limit.pendingCount < maxQueuedSyncs) {
        // Said once the queue has drained to half, not each time one place frees up: at the edge
        // a burst fills it again at once, and the log would flap.
        if (refused > 0 && limit.pendingCount <= maxQueuedSyncs / 2) {
          log.info({ refused }, "accepting syncs again");
          refused = 0;
        }
        return undefined;
      }
      if (refused++ === 0) {
        log.info(
          { storing: limit.activeCount, waiting: limit.pendingCount },
          "syncs are backlogged: refusing new ones with a retry hint until the waiting ones are stored",
        );
      }
      return new ConnectError(
        `${limit.activeCount + limit.pendingCount} agents' syncs are being stored or waiting; try again in ${syncRetryAfterSeconds} s`,
        Code.Unavailable,
        new Headers({ "retry-after": String(syncRetryAfterSeconds) }),
      );
    },
  };
}

/**
 * Refuses a sync while the queue is full before anything else is done for it: before its
 * signature is checked (no caller looked up, no nonce written) and before its body is read. Refused
 * syncs were most of an enrolment burst's calls, and each one cost as much as a heartbeat.
 */
export function syncBacklogGate(queue: SyncQueue) {
  return async (ctx: HandlerContext): Promise<void> => {
    if (ctx.service.typeName !== AgentService.typeName || ctx.method.name !== AgentService.method.sync.name) return;
    const refusal = queue.refusal();
    if (refusal) throw refusal;
  };
}
