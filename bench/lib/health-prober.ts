/**
 * A worker that asks `/healthz` one request at a time (each on a new TLS + HTTP/2 connection, as a
 * load balancer's check would) until told "stop", then posts every answer's time, ms. It has an
 * event loop of its own, so what the benchmark's main thread does meanwhile (writing an abusive
 * client's frames) does not count as the server's time. It posts "ready" after its first answer.
 */
import { parentPort, workerData } from "node:worker_threads";
import { getHttp2 } from "../../test/helpers/https.js";

const { url, ca } = workerData as { url: string; ca: string };
let stopping = false;
parentPort!.once("message", () => (stopping = true));
const times: number[] = [];
try {
  do {
    const start = performance.now();
    const res = await getHttp2(`${url}/healthz`, ca);
    if (res.status !== 200) throw new Error(`/healthz answered ${res.status}`);
    times.push(performance.now() - start);
    if (times.length === 1) parentPort!.postMessage("ready");
  } while (!stopping);
  parentPort!.postMessage({ times });
} catch (err) {
  parentPort!.postMessage({ error: err instanceof Error ? err.message : String(err) });
}
