import { signedAtHeader } from "../services/lib/hmac/signing-client.js";

/** Backoff while the panel cannot be reached: full jitter from 1 s, capped at 60 s. */
export const retryBaseMs = 1000;
export const retryCapMs = 60_000;

/**
 * How long the command stream may go without a message before the agent takes it for lost and
 * opens another: the panel sends one as soon as the stream is accepted and a keepalive every 25 s,
 * so 90 s of silence is a call the panel never answered (or a proxy holding it), which HTTP/2
 * PINGs cannot see since the connection itself is alive.
 */
export const commandStreamSilenceMs = 90_000;

/**
 * HTTP/2 keepalive towards the panel: a PING every `intervalMs` while no data arrives, and the
 * connection (with the command stream on it) closed when none is answered within `timeoutMs`.
 * A black-holed or half-open connection is so found within interval + timeout (60 s by default)
 * and reopened with backoff. MYOSICAM_AGENT_KEEPALIVE_SECONDS sets the interval (1–3600).
 */
export function keepalive(env: NodeJS.ProcessEnv = process.env): { pingIntervalMs: number; pingTimeoutMs: number } {
  const raw = env.MYOSICAM_AGENT_KEEPALIVE_SECONDS;
  const seconds = raw === undefined || raw === "" ? 45 : Number(raw);
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 3600) {
    throw new Error(`MYOSICAM_AGENT_KEEPALIVE_SECONDS must be a whole number of seconds between 1 and 3600, got "${raw}"`);
  }
  return { pingIntervalMs: seconds * 1000, pingTimeoutMs: Math.min(15, seconds) * 1000 };
}

/**
 * How far this host's clock is from the panel's, in seconds (positive: this host is ahead): the
 * time the request was signed with (noted by the signing client; else `now`) against the Date
 * header of the panel's answer; undefined without one. The panel accepts signed calls
 * only within HMAC_SKEW_SECONDS (300 s by default) of its own time, and says no more than
 * "signature rejected": the agent finds the reason itself.
 */
export function clockSkewSeconds(headers: Headers, now = Date.now()): number | undefined {
  const panelTime = Date.parse(headers.get("date") ?? "");
  if (Number.isNaN(panelTime)) return undefined;
  // The time the refused request was signed with, when the signing client noted it.
  const signedAt = Number(headers.get(signedAtHeader) || Number.NaN) * 1000;
  return Math.round(((Number.isFinite(signedAt) ? signedAt : now) - panelTime) / 1000);
}

/** A skew past this is named as the likely reason a signed call was refused. */
export const suspiciousSkewSeconds = 60;

/**
 * How long after reporting a change set's change (whose result carries each account as it now is)
 * the agent sends its resync: at random between 2 s and MYOSICAM_AGENT_RESYNC_SPREAD_SECONDS
 * (default 60; 0: at once), so that the snapshots of a change to the whole fleet reach the panel
 * spread over a minute instead of with the results (docs/sizing.md).
 */
export function resyncDelayMs(env: NodeJS.ProcessEnv = process.env, random = Math.random): number {
  const raw = env.MYOSICAM_AGENT_RESYNC_SPREAD_SECONDS;
  const seconds = raw === undefined || raw === "" ? 60 : Number(raw);
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > 3600) {
    throw new Error(`MYOSICAM_AGENT_RESYNC_SPREAD_SECONDS must be a whole number of seconds between 0 and 3600, got "${raw}"`);
  }
  const least = Math.min(2, seconds);
  return Math.round((least + random() * (seconds - least)) * 1000);
}
