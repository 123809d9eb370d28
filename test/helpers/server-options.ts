import type { Logger } from "../../services/lib/log.js";

/** The options of a test server that its test does not look at: always ready, generous limits. */
export function everydayServerOptions(log: Logger) {
  return {
    readiness: async () => ({ ready: true, checks: {} }),
    log,
    readMaxBytes: 1 << 20,
    bodyReadTimeoutMs: 30_000,
    maxTimeoutMs: 60_000,
    pingIntervalMs: 30_000,
  };
}
