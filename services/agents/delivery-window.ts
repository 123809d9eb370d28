/**
 * Flow control of command delivery, per panel process: at most `limit` commands delivered and not
 * yet answered. A change for the whole fleet wakes every command stream at once; delivered at once,
 * 10,000 results came back within a second, more than the panel could take, and admission control
 * refused them (and everything else) until the agents gave up. With the window, streams take turns
 * in the order they asked: a delivery waits for room, and each result (or the stream's end, or
 * `answerTimeoutMs` without an answer: a long command, a result sent to another replica) makes room
 * for the next. The fan-out then runs as fast as results are written, and no faster.
 */
/** How long a delivered command holds room without an answer. */
export const deliveryAnswerTimeoutMs = 30_000;

export interface DeliveryTurn {
  /** Whether the turn is there now (no need to wait on `ready`). */
  readonly granted: boolean;
  /** Resolves when the stream may claim and deliver. */
  readonly ready: Promise<void>;
  /** The commands delivered with this turn (none: the room is given back); each holds room until answered. */
  delivered(commandIds: readonly string[]): void;
  /** Gives the turn up, waiting or granted and unused; nothing once `delivered` was called. */
  cancel(): void;
}

export interface DeliveryWindow {
  /** A turn to deliver commands to this server, in the order asked for. */
  turn(serverId: string): DeliveryTurn;
  /** A command's result arrived from this server: its room is free (a result naming another server's command frees nothing). */
  answered(serverId: string, commandId: string): void;
  /** The stream that delivered these ended: their room is free (they are delivered again on its next stream). */
  abandoned(commandIds: Iterable<string>): void;
  /** Commands delivered and not answered, and streams waiting for a turn. */
  state(): { inFlight: number; waiting: number };
  stop(): void;
}

export function createDeliveryWindow(options: { limit: number; answerTimeoutMs: number }): DeliveryWindow {
  /** Commands delivered and unanswered: the server each went to, and its answer timeout. */
  const outstanding = new Map<string, { serverId: string; timer: NodeJS.Timeout }>();
  // Waiting turns, first asked first served (a Set keeps insertion order).
  const waiting = new Set<() => void>();
  let granted = 0;
  const room = () => options.limit - outstanding.size - granted;
  const pump = () => {
    for (const grant of waiting) {
      if (room() <= 0) return;
      waiting.delete(grant);
      grant();
    }
  };
  const release = (id: string) => {
    const entry = outstanding.get(id);
    if (!entry) return;
    clearTimeout(entry.timer);
    outstanding.delete(id);
  };
  return {
    turn(serverId) {
      let state: "waiting" | "granted" | "done" = "waiting";
      let resolve!: () => void;
      const ready = new Promise<void>((r) => (resolve = r));
      const grant = () => {
        state = "granted";
        granted++;
        resolve();
      };
      if (waiting.size === 0 && room() > 0) grant();
      else waiting.add(grant);
      const end = () => {
        if (state === "granted") granted--;
        else if (state === "waiting") waiting.delete(grant);
        state = "done";
      };
      return {
        get granted() {
          return state === "granted";
        },
        ready,
        delivered(commandIds) {
          if (state !== "granted") return;
          end();
          for (const id of commandIds) {
            release(id);
            const timer = setTimeout(() => {
              outstanding.delete(id);
              pump();
            }, options.answerTimeoutMs);
            timer.unref();
            outstanding.set(id, { serverId, timer });
          }
          pump();
        },
        cancel() {
          if (state === "done") return;
          end();
          pump();
        },
      };
    },
    answered(serverId, commandId) {
      if (outstanding.get(commandId)?.serverId !== serverId) return;
      release(commandId);
      pump();
    },
    abandoned(commandIds) {
      for (const id of commandIds) release(id);
      pump();
    },
    state: () => ({ inFlight: outstanding.size, waiting: waiting.size }),
    stop() {
      for (const { timer } of outstanding.values()) clearTimeout(timer);
      outstanding.clear();
    },
  };
}
