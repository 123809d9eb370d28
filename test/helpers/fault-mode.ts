/**
 * How long the fault and fuzz suites run. CI runs the short mode; `FAULTS_LONG=1` runs the long
 * one, and `FUZZ_RUNS=n` sets the number of fuzz cases outright (scaled per test from its short
 * count, so each keeps its share).
 */
export const faultsLong = process.env.FAULTS_LONG === "1";

const fuzzRunsSetting = (): number | undefined => {
  const text = process.env.FUZZ_RUNS;
  if (text === undefined || text === "") return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`FUZZ_RUNS must be a whole number of cases, at least 1 (got "${text}")`);
  return n;
};

/**
 * The cases a fuzz test runs: `short` in CI, `long` with FAULTS_LONG=1; with FUZZ_RUNS the total
 * is that many cases over `shareOf` (the suite's whole short count), this test its share of it.
 */
export function fuzzRuns(short: number, long: number, shareOf = short): number {
  const total = fuzzRunsSetting();
  if (total !== undefined) return Math.max(1, Math.round((total * short) / shareOf));
  return faultsLong ? long : short;
}
