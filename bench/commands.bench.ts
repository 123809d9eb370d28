/**
 * Command fan-out: 1,000 simulated agents (in a worker thread: bench/lib/agent-fleet.ts), each
 * with its own signed HTTP/2 TLS connection and an open Subscribe stream, get one account change (`apply_accounts`, created for all of them in
 * one call, as the operator API does) and report success at once. Prints the time from the
 * create call until every result is stored (target ≤ 3 s on this machine), then the panel's
 * commands/s over several fan-outs back to back. The agents do no file work: this measures the
 * panel (store, NOTIFY, claim, unseal, deliver, record), not OScam.
 *
 *   npm run bench -- commands      (BENCH_AGENTS=1000 BENCH_ROUNDS=5 to change sizes)
 */
import { Worker } from "node:worker_threads";
import { createClient } from "@connectrpc/connect";
import { CryptoService } from "../gen/myosicam/crypto/v1/crypto_pb.js";
import { createCommands } from "../services/agents/commands.js";
import { enrollAgents, startBenchPanel } from "./lib/panel.js";

const agents = Number(process.env.BENCH_AGENTS ?? 1000);
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
/** One fan-out may take this long before the run says how far it got and stops. */
const fanOutDeadlineMs = 60_000;
const runDeadlineMs = 10 * 60_000;

/** What was measured so far: printed at the end, or when the run has to stop early. */
const measured: string[] = [];
const hardStop = setTimeout(() => {
  console.error(`commands: did not finish within ${runDeadlineMs / 60_000} minutes; stopping. Measured so far:\n  ${measured.join("\n  ") || "nothing"}`);
  process.exit(1);
}, runDeadlineMs);
hardStop.unref();

const panel = await startBenchPanel();
let fleet: Worker | undefined;
try {
  const enrolled = await enrollAgents(panel, agents);
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));

  // The agents run in a worker thread; it reports how many results it sent.
  let reported = 0;
  let failures = 0;
  let onReport: (() => void) | undefined;
  let onSubscribed!: () => void;
  const everyoneSubscribed = new Promise<void>((resolve) => (onSubscribed = resolve));
  fleet = new Worker(new URL("./lib/agent-fleet.ts", import.meta.url), { workerData: { url: panel.url, ca: panel.ca, agents: enrolled } });
  fleet.on("message", (m: { subscribed?: number; reported?: number; failed?: string }) => {
    if (m.subscribed) onSubscribed();
    if (m.reported) {
      reported += m.reported;
      onReport?.();
    }
    if (m.failed) {
      failures++;
      console.error(`an agent's stream failed: ${m.failed}`);
    }
  });
  fleet.on("error", (err) => console.error(`the agents' worker failed: ${err.message}`));
  await everyoneSubscribed;
  console.log(`${agents} agents subscribed, each on its own connection, in a worker thread of their own`);

  const change = { changes: [{ operation: "ACCOUNT_OPERATION_UPDATE", user: "living-room", set: [{ key: "description", value: "moved to the kitchen" }] }] };
  const fanOut = async () => {
    const start = process.hrtime.bigint();
    const target = reported + agents;
    const created = await createCommands(panel.db, crypto, {
      serverIds: enrolled.map((a) => a.serverId),
      instance: "main",
      kind: "apply_accounts",
      payload: change,
      createdBy: "bench",
    });
    const createdMs = Number(process.hrtime.bigint() - start) / 1e6;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `after ${fanOutDeadlineMs / 1000} s only ${agents - (target - reported)} of ${agents} results were in (stream failures so far: ${failures})`,
            ),
          ),
        fanOutDeadlineMs,
      );
      onReport = () => {
        if (reported < target) return;
        clearTimeout(timer);
        resolve();
      };
      onReport();
    });
    onReport = undefined;
    const totalMs = Number(process.hrtime.bigint() - start) / 1e6;
    const stored = await panel
      .db("commands")
      .whereIn(
        "id",
        created.map((c) => c.id),
      )
      .where({ status: "succeeded" })
      .count({ n: "*" });
    if (Number(stored[0]!.n) !== agents) throw new Error(`only ${stored[0]!.n} of ${agents} results stored as succeeded`);
    return { createdMs, totalMs };
  };
  const first = await fanOut();
  const firstLine = `fan-out of one account change to ${agents} agents: all results in after ${(first.totalMs / 1000).toFixed(2)} s (target ≤ 3 s); storing the ${agents} commands took ${first.createdMs.toFixed(0)} ms`;
  measured.push(firstLine);
  console.log(firstLine);
  const start = process.hrtime.bigint();
  const times = [];
  for (let i = 0; i < rounds; i++) {
    times.push((await fanOut()).totalMs);
    measured.push(`fan-out ${i + 2}: ${(times.at(-1)! / 1000).toFixed(2)} s`);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  times.sort((a, b) => a - b);
  console.log(
    `${rounds} more fan-outs back to back: ${((agents * rounds) / seconds).toFixed(0)} commands/s (created, delivered, reported, stored); ` +
      `median ${(times[Math.floor(rounds / 2)]! / 1000).toFixed(2)} s per fan-out; stream failures ${failures}`,
  );
} catch (err) {
  console.error(`commands: stopped early: ${(err as Error).message}. Measured so far:\n  ${measured.join("\n  ") || "nothing"}`);
  process.exitCode = 1;
} finally {
  clearTimeout(hardStop);
  fleet?.postMessage("stop");
  await fleet?.terminate();
  await panel.stop();
}
