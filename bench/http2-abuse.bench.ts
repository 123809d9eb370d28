/**
 * `/healthz` while the panel is abused (`npm run bench -- http2-abuse [--scale 1]`): a real
 * `myosicam up` in its own process, the five HTTP/2 abuse scenarios of the fault suite
 * (test/helpers/http2-abuse.ts) one after the other, `scale` times their usual connections. While
 * each runs, a worker thread asks `/healthz` again and again (bench/lib/health-prober.ts); its
 * median and slowest answer are printed with the ratio to the target (median < 100 ms meanwhile),
 * beside the same figures with nothing going on.
 * The abusive clients run in this process's main thread, the prober in a thread of its own, so the
 * figures are the server's and the network's, not the time this process spends writing frames.
 *
 * Bounded: the whole run stops itself after 5 minutes, and its `up` with it.
 */
import { Worker } from "node:worker_threads";
import { abuseScenarios, abuseSettings } from "../test/helpers/http2-abuse.js";
import { startUpProcess } from "../test/helpers/up-process.js";
import { stopAfter } from "./lib/deadline.js";
import { owned } from "./lib/owned-children.js";

stopAfter("http2-abuse", 5);

const scaleAt = process.argv.indexOf("--scale");
const scale = scaleAt === -1 ? 1 : Number(process.argv[scaleAt + 1]);
if (!Number.isInteger(scale) || scale < 1 || scale > 20) {
  console.error(`http2-abuse: --scale takes a whole number from 1 to 20, got ${process.argv[scaleAt + 1] ?? "nothing"}`);
  process.exit(2);
}
const targetMs = 100;

const stack = await startUpProcess("bench-abuse", abuseSettings);
owned(stack.up.child);
const url = stack.report.listeners.panel.url;

/** Runs `work` while the prober worker asks /healthz; answers every answer's time, ms, and what `work` said. */
async function healthWhile<T>(work: () => Promise<T>): Promise<{ times: number[]; said: T }> {
  const prober = new Worker(new URL("./lib/health-prober.ts", import.meta.url), { workerData: { url, ca: stack.ca } });
  try {
    const answers = new Promise<{ times?: number[]; error?: string }>((resolve, reject) => {
      prober.on("message", (m) => m !== "ready" && resolve(m));
      prober.once("error", reject);
    });
    await new Promise<void>((resolve, reject) => {
      prober.once("message", () => resolve());
      prober.once("error", reject);
    });
    const said = await work();
    prober.postMessage("stop");
    const { times, error } = await answers;
    if (error !== undefined) throw new Error(error);
    return { times: times!, said };
  } finally {
    await prober.terminate();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const figure = (name: string, times: number[]) =>
  `${name}: /healthz ${times.length} answers, median ${median(times).toFixed(1)} ms, slowest ${Math.max(...times).toFixed(1)} ms; ` +
  `median/target ${(median(times) / targetMs).toFixed(2)} ${median(times) < targetMs ? "(met)" : "(NOT met)"}`;

let failed = false;
try {
  const idle = await healthWhile(() => new Promise((r) => setTimeout(r, 2000)));
  console.log(figure("idle", idle.times));
  for (const scenario of Object.values(abuseScenarios(scale))) {
    const { times, said } = await healthWhile(() => scenario.run(url));
    console.log(`${figure(scenario.name, times)} — ${said}`);
    failed ||= median(times) >= targetMs;
  }
} catch (err) {
  console.error(`http2-abuse: ${err instanceof Error ? err.message : String(err)}`);
  failed = true;
} finally {
  await stack.stop();
}
process.exit(failed ? 1 : 0);
