/**
 * Simulated agents for the command fan-out benchmark, in a worker thread of their own (agents are
 * other machines: here they at least get their own event loop, so the panel's is its own). Each
 * agent subscribes on its own connection and reports every command it receives as succeeded at
 * once (an apply_accounts command with a result per change). Posts `{ subscribed }` once every stream is open, then `{ reported: n }` per batch of
 * reports, and `{ failed: message }` when a stream breaks; a broken stream is opened again after a
 * full-jitter backoff, as the real agent does.
 */
import { parentPort, workerData } from "node:worker_threads";
import { AccountChangeStatus, CommandOutcome } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { fullJitterDelayMs } from "../../services/lib/backoff.js";
import { agentClient, type BenchAgent } from "./panel.js";

const { url, ca, agents } = workerData as { url: string; ca: string; agents: BenchAgent[] };
const streams = new AbortController();
parentPort!.on("message", (m: string) => m === "stop" && streams.abort());

let subscribed = 0;
let reported = 0;
let flushing = false;
const report = () => {
  reported++;
  // One message per turn of the event loop, not one per report.
  if (flushing) return;
  flushing = true;
  setImmediate(() => {
    flushing = false;
    parentPort!.postMessage({ reported });
    reported = 0;
  });
};

/** Full-jitter backoff as the real agent uses: a random wait up to min(cap, base × 2^attempt). */
const backoffMs = (attempt: number) => fullJitterDelayMs(attempt, 500, 15_000);

await Promise.all(
  agents.map(async (agent) => {
    const client = agentClient(url, ca, agent);
    let counted = false;
    let attempt = 0;
    // A stream that ends or breaks is opened again, as the agent does, until the run stops.
    while (!streams.signal.aborted) {
      try {
        for await (const message of client.subscribe({ agentVersion: "0.1.0" }, { signal: streams.signal, timeoutMs: 0 })) {
          attempt = 0;
          // The panel sends a keepalive as soon as the stream is open.
          if (!counted && ++subscribed === agents.length) parentPort!.postMessage({ subscribed });
          counted = true;
          if (message.message.case !== "command") continue;
          const command = message.message.value;
          // An apply_accounts command is answered per change, as the real agent does: each applied,
          // with the keys before and after.
          const accountResults =
            command.payload.case === "applyAccounts"
              ? command.payload.value.changes.map((change, index) => ({
                  index,
                  status: AccountChangeStatus.APPLIED,
                  detail: "bench",
                  before: { entries: [{ key: "user", value: change.user }] },
                  after: { entries: [{ key: "user", value: change.user }, ...change.set] },
                }))
              : [];
          await client.reportResult({ commandId: command.id, outcome: CommandOutcome.SUCCEEDED, detail: "bench", accountResults });
          report();
        }
      } catch (err) {
        if (streams.signal.aborted) return;
        parentPort!.postMessage({ failed: (err as Error).message });
      }
      await new Promise((resolve) => setTimeout(resolve, backoffMs(attempt++)));
    }
  }),
);
