/**
 * `work`, or a failure naming what it waited for once it has taken `timeoutMs` (15 s): for a
 * statement that must not wait for a lock another transaction holds, or an event that must come,
 * so that a regression fails instead of hanging.
 */
export async function unblocked<T>(work: Promise<T>, waitedFor: string, timeoutMs = 15_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`waited for ${waitedFor}`)), timeoutMs);
  });
  return Promise.race([work, waited]).finally(() => clearTimeout(timer));
}
