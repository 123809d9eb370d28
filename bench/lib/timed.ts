/** The median time of `runs` calls after one warm-up call (the median shrugs off a stray GC or a busy neighbour). */
export async function timed<T>(runs: number, fn: (run: number) => Promise<T>): Promise<{ ms: number; value: T }> {
  let value = await fn(-1);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    value = await fn(i);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(runs / 2)]!, value };
}

/** An oscam.user with `n` accounts of the usual shape. */
export function accountsFile(n: number): string {
  let text = "# generated\n";
  for (let i = 0; i < n; i++)
    text += `\n[account]\nuser = user${i}\npwd = pw-${i}-xyz\ngroup = ${(i % 8) + 1}\ncaid = 0963,098C\nident = 0963:000000;098C:000000\nexpdate = 2030-12-31\ndescription = box ${i}\n`;
  return text;
}
