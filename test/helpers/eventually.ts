/**
 * Polls `read` until `check` holds: waiting on a condition (a heartbeat written, a log line), not
 * on a guess of how long something takes. Fails after `timeoutMs` naming `what`.
 */
export async function eventually<T>(read: () => Promise<T>, check: (v: T) => boolean, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (check(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last seen: ${shown(value)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A short form of a value for the timeout message. */
function shown(value: unknown): string {
  try {
    const text = JSON.stringify(value) ?? String(value);
    return text.length > 200 ? `${text.slice(0, 200)}…` : text;
  } catch {
    return String(value);
  }
}
