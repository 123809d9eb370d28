/** Backoff while the panel cannot be reached: full jitter from 1 s, capped at 60 s. */
export const retryBaseMs = 1000;
export const retryCapMs = 60_000;
