/**
 * Full-jitter exponential backoff: the n-th retry (0-based) waits a random time between 0 and
 * min(cap, base · 2ⁿ), so many clients that failed together do not retry together.
 */
export function fullJitterDelayMs(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** `intervalMs` ± `fraction` (e.g. 0.1 for ±10 %), uniformly. */
export function withJitter(intervalMs: number, fraction: number, random: () => number = Math.random): number {
  return Math.round(intervalMs * (1 - fraction + 2 * fraction * random()));
}

/** The server's retry hint (`retry-after`, in seconds) in ms, or undefined without a usable one. */
function retryHintMs(err: { metadata?: Headers } | undefined): number | undefined {
  const hintSeconds = Number(err?.metadata?.get("retry-after") ?? Number.NaN);
  return Number.isFinite(hintSeconds) && hintSeconds > 0 ? hintSeconds * 1000 : undefined;
}

/**
 * The wait before retrying after `err`: full-jitter backoff, but never less than the server's retry
 * hint (`retry-after`, in seconds, sent with `Unavailable` when the panel refuses work early under
 * load), plus up to half the hint again at random so that refused callers do not come back together.
 */
export function retryDelayMs(
  err: { metadata?: Headers } | undefined,
  attempt: number,
  baseMs: number,
  capMs: number,
  random: () => number = Math.random,
): number {
  const backoff = fullJitterDelayMs(attempt, baseMs, capMs, random);
  const hintMs = retryHintMs(err);
  if (hintMs === undefined) return backoff;
  return Math.max(backoff, Math.floor(Math.min(hintMs, capMs) * (1 + random() / 2)));
}

/**
 * When to send a periodic call (a heartbeat) again after the panel turned it away busy (a retry
 * hint): at a random point between the hint and one interval. Retried on the hint alone, every
 * refused agent would call every 5–7.5 s instead of once a minute, and a busy panel would get
 * twelve times its usual calls and stay busy (seen at 10,000 agents after a fan-out); spread over
 * the interval, the fleet's rate stays what the panel takes in steady state. Answers undefined
 * without a hint (not busy: back off as when unreachable).
 */
export function busyRetryDelayMs(err: { metadata?: Headers } | undefined, intervalMs: number, random: () => number = Math.random): number | undefined {
  const hintMs = retryHintMs(err);
  if (hintMs === undefined) return undefined;
  return Math.floor(hintMs + random() * Math.max(0, intervalMs - hintMs));
}
