/**
 * Stops a benchmark that runs past `minutes`: it prints that it did not finish (a hung run is a
 * failure with a message, never a hang) and exits 1. The timer does not keep a finished run alive.
 */
export function stopAfter(name: string, minutes: number): void {
  setTimeout(() => {
    console.error(`${name}: did not finish within ${minutes} minutes; stopping`);
    process.exit(1);
  }, minutes * 60_000).unref();
}
