/**
 * Simulated agents for the command fan-out benchmark, in a worker thread of their own (agents are
 * other machines: here they at least get their own event loop, so the panel's is its own). Each
 * agent subscribes on its own connection and reports every command it receives as succeeded at
 * once (an apply_accounts command with a result per change). Posts `{ subscribed }` once every stream is open, then `{ reported: n }` per batch of
 * reports, and `{ failed: message }` when a stream breaks.
 */
import { parentPort, workerData } from "node:worker_threads";
import { AccountChangeStatus, CommandOutcome } from "../../gen/myosicam/agent/v1/agent_pb.js";
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

await Promise.all(
  agents.map(async (agent) => {
    const client = agentClient(url, ca, agent);
    let first = true;
    try {
      for await (const message of client.subscribe({ agentVersion: "0.1.0" }, { signal: streams.signal })) {
        // The panel sends a keepalive as soon as the stream is open.
        if (first && ++subscribed === agents.length) parentPort!.postMessage({ subscribed });
        first = false;
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
      if (!streams.signal.aborted) parentPort!.postMessage({ failed: (err as Error).message });
    }
  }),
);
