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
