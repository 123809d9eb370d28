import pg from "pg";
import type { Logger } from "./log.js";

/**
 * One connection that LISTENs on `channel` and calls `onNotify` with each payload; when the
 * connection drops it reconnects every second until stopped, and calls `onConnect` each time it
 * (re)connects, so the owner can look for what was announced while it was not listening.
 */
export function createPgListener(options: {
  url: string;
  channel: string;
  log: Logger;
  /** What the log calls it, e.g. "command notifications". */
  what: string;
  onNotify(payload: string): void;
  onConnect(): void;
}) {
  let client: pg.Client | undefined;
  let retry: NodeJS.Timeout | undefined;
  let stopped = false;
  const again = () => {
    if (!stopped) retry = setTimeout(() => void connect(), 1000);
  };
  const connect = async () => {
    if (stopped) return;
    const next = new pg.Client({ connectionString: options.url });
    next.on("notification", (n) => options.onNotify(n.payload ?? ""));
    next.on("error", (err) => {
      options.log.warn({ err: err.message }, `${options.what} lost their connection; reconnecting`);
      next.end().catch(() => {});
      if (client === next) client = undefined;
      again();
    });
    try {
      await next.connect();
      await next.query(`listen ${options.channel}`);
      client = next;
      options.onConnect();
    } catch (err) {
      options.log.warn({ err: (err as Error).message }, `cannot listen for ${options.what} yet; retrying`);
      await next.end().catch(() => {});
      again();
    }
  };
  return {
    start: () => void connect(),
    async stop() {
      stopped = true;
      if (retry) clearTimeout(retry);
      await client?.end().catch(() => {});
    },
  };
}
