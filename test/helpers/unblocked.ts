/**
 * `work`, or a failure naming what it waited for once it has taken 15 s: for a statement that must
 * not wait for a lock another transaction holds, so that a regression fails instead of hanging.
 */
export async function unblocked<T>(work: Promise<T>, waitedFor: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`waited for ${waitedFor}`)), 15_000);
  });
  return Promise.race([work, waited]).finally(() => clearTimeout(timer));
}
