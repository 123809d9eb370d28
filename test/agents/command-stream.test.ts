import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { randomUUID } from "node:crypto";
import { cp, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { create } from "@bufbuild/protobuf";
import {
  AccountChangeStatus,
  AccountOperation,
  type AgentService,
  CommandKind,
  CommandSchema,
  type ReportResultRequest,
} from "../../gen/myosicam/agent/v1/agent_pb.js";
import { createExecutor, runCommandStream } from "../../agent/commands.js";
import { discoverInstances } from "../../agent/discovery/discover.js";
import { startOscamEmulator } from "../oscam-emulator/emulator.js";
import { createLogger } from "../../services/lib/log.js";
import { makeTempDir } from "../helpers/cli.js";
import { eventually } from "../helpers/eventually.js";

const test = suite("the agent's command stream and the results it sends");
const fixtures = resolve(import.meta.dirname, "../fixtures/oscam");

/**
 * A panel as the stream sees it: each Subscribe delivers one command and then stays open;
 * ReportResult answers with what `answers` holds, in turn (then ok).
 */
function fakePanel(answers: Array<ConnectError | "ok">) {
  const calls = { subscribes: 0, results: 0 };
  const client = {
    async *subscribe(_req: unknown, options: { signal: AbortSignal }) {
      calls.subscribes++;
      yield { message: { case: "command", value: { id: "cmd-1", kind: CommandKind.RESYNC, instance: "", payload: { case: undefined } } } };
      await new Promise((resolve) => options.signal.addEventListener("abort", resolve, { once: true }));
    },
    async reportResult() {
      const answer = answers[calls.results++] ?? "ok";
      if (answer !== "ok") throw answer;
      return {};
    },
  };
  return { client: client as unknown as Client<typeof AgentService>, calls };
}

const busy = () => new ConnectError("the panel is busy; try again in 1 s", Code.Unavailable, new Headers({ "retry-after": "1" }));

/**
 * Runs the agent's command stream against `panel` until `stop`; counts the commands it ran (each
 * taking `runMs`), with the silence limit given.
 */
async function streamAgainst(panel: { client: Client<typeof AgentService> }, options: { silenceMs?: number; runMs?: number; ran?: () => void } = {}) {
  const dir = await makeTempDir("command-stream");
  const halt = new AbortController();
  let executed = 0;
  const running = runCommandStream({
    client: () => panel.client,
    execute: async () => {
      if (options.runMs) await new Promise((resolve) => setTimeout(resolve, options.runMs));
      executed++;
      options.ran?.();
      return { succeeded: true, failureCode: "", detail: "resynced" };
    },
    stateDir: dir.path,
    log: createLogger({ level: "silent" }),
    signal: halt.signal,
    silenceMs: options.silenceMs,
  });
  return {
    executed: () => executed,
    async stop() {
      halt.abort();
      await running;
      await dir.remove();
    },
  };
}

test("a result the panel turns away for now is sent again on the open stream, which stays open", async () => {
  const panel = fakePanel([busy(), new ConnectError("the operation timed out", Code.DeadlineExceeded), "ok"]);
  const agent = await streamAgainst(panel);
  try {
    await eventually(
      async () => panel.calls.results,
      (n) => n >= 3,
      "the third result sent",
    );
    assert.is(panel.calls.subscribes, 1, "one stream, kept open");
    assert.is(agent.executed(), 1, "the command ran once");
  } finally {
    await agent.stop();
  }
});

test("a result refused for good, or turned away every time, breaks the stream: the command comes again and is not run twice", async () => {
  const away = () => new ConnectError("the database is unavailable right now; try again shortly", Code.Unavailable);
  for (const [answers, sentOnFirstStream] of [
    [[new ConnectError("no command cmd-1 for this server", Code.NotFound)], 1],
    [[away(), away(), away(), away(), away()], 5],
  ] as const) {
    const panel = fakePanel([...answers]);
    const agent = await streamAgainst(panel);
    try {
      await eventually(
        async () => panel.calls.subscribes,
        (n) => n >= 2,
        "the stream opened again",
      );
      await eventually(
        async () => panel.calls.results,
        (n) => n >= sentOnFirstStream + 1,
        "the result sent once more when the command came again",
      );
      assert.is(panel.calls.results, sentOnFirstStream + 1);
      assert.is(agent.executed(), 1, "acknowledged from memory, not run again");
    } finally {
      await agent.stop();
    }
  }
});

/**
 * A panel whose first `silentStreams` Subscribes are accepted and then never carry a message (a
 * call it never answered); later ones deliver one command and stay open.
 */
function silentPanel(silentStreams: number) {
  const calls = { subscribes: 0 };
  const client = {
    async *subscribe(_req: unknown, options: { signal: AbortSignal }) {
      calls.subscribes++;
      if (calls.subscribes > silentStreams) {
        yield { message: { case: "command", value: { id: "cmd-1", kind: CommandKind.RESYNC, instance: "", payload: { case: undefined } } } };
      }
      // As a real stream: an aborted call ends at once, even when it was aborted before this read.
      if (!options.signal.aborted) await new Promise((resolve) => options.signal.addEventListener("abort", resolve, { once: true }));
      options.signal.throwIfAborted();
    },
    async reportResult() {
      return {};
    },
  };
  return { client: client as unknown as Client<typeof AgentService>, calls };
}

test("a stream that carries nothing for the silence limit is given up and opened again: its command then arrives", async () => {
  const panel = silentPanel(1);
  const agent = await streamAgainst(panel, { silenceMs: 200 });
  try {
    await eventually(
      async () => agent.executed(),
      (n) => n === 1,
      "the command to arrive on the second stream",
    );
    assert.is(panel.calls.subscribes, 2);
  } finally {
    await agent.stop();
  }
});

test("a command that runs longer than the silence limit does not break its stream", async () => {
  // The stream carries nothing more while the command runs (the panel's keepalives are not read).
  const panel = silentPanel(0);
  let streamsWhenDone = 0;
  const agent = await streamAgainst(panel, { silenceMs: 200, runMs: 600, ran: () => (streamsWhenDone = panel.calls.subscribes) });
  try {
    await eventually(
      async () => agent.executed(),
      (n) => n === 1,
      "the long command to finish",
    );
    assert.is(streamsWhenDone, 1, "the stream the command came on was not given up while it ran");
  } finally {
    await agent.stop();
  }
});

test("a change set's changes: the result carries each account as OScam now reads it and goes before the resync, once a sync under way has ended", async () => {
  const dir = await makeTempDir("result-first");
  const configDir = join(dir.path, "main");
  await cp(join(fixtures, "main"), configDir, { recursive: true });
  const emulator = await startOscamEmulator({ configDir, user: "admin", password: "dev-webif-Pw!main-7f3c" });
  const conf = join(configDir, "oscam.conf");
  await writeFile(conf, (await readFile(conf, "utf8")).replace(/^(httpport\s*=\s*)\d+/m, `$1${emulator.port}`));
  // What happened, in order: the sync under way ending, the result, the resync.
  const events: string[] = [];
  let endSync!: () => void;
  const syncUnderWay = new Promise<void>((resolve) => {
    endSync = () => {
      events.push("the sync under way ended");
      resolve();
    };
  });
  let reported: ReportResultRequest | undefined;
  const command = create(CommandSchema, {
    id: randomUUID(),
    kind: CommandKind.APPLY_ACCOUNTS,
    instance: "main",
    payload: {
      case: "applyAccounts",
      value: {
        independent: true,
        changes: [
          { operation: AccountOperation.UPDATE, user: "bedroom", set: [{ key: "expdate", value: "2031-01-31" }] },
          { operation: AccountOperation.DELETE, user: "kitchen_vu" },
        ],
      },
    },
  });
  const client = {
    async *subscribe(_req: unknown, options: { signal: AbortSignal }) {
      yield { message: { case: "command", value: command } };
      await new Promise((resolve) => options.signal.addEventListener("abort", resolve, { once: true }));
    },
    async reportResult(req: ReportResultRequest) {
      events.push("result");
      reported = req;
      return {};
    },
  } as unknown as Client<typeof AgentService>;
  const halt = new AbortController();
  const resync = async () => {
    events.push("resync");
  };
  const running = runCommandStream({
    client: () => client,
    execute: createExecutor({
      resync,
      syncSettled: () => syncUnderWay,
      discover: () => discoverInstances({ configDirs: [configDir], unitDirs: [], procRoot: join(dir.path, "no-proc") }),
    }),
    stateDir: join(dir.path, "state"),
    log: createLogger({ level: "silent" }),
    signal: halt.signal,
    changeReported: () => {
      events.push("change reported");
    },
  });
  try {
    await eventually(
      async () => emulator.reloads(),
      (n) => n === 1,
      "OScam told to reload the written file",
    );
    // A window for an agent that does not wait to show it (it would report within milliseconds);
    // the order checked below is what proves the waiting.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(events, [], "nothing is reported while a sync that may have read the file before the change is under way");
    endSync();
    await eventually(
      async () => events.length,
      (n) => n === 3,
      "the result and then what follows it",
    );
    assert.equal(events, ["the sync under way ended", "result", "change reported"]);
    const [updated, deleted] = reported!.accountResults;
    assert.is(updated!.status, AccountChangeStatus.APPLIED);
    assert.is(updated!.account?.user, "bedroom");
    assert.is(updated!.account?.expiryDate, "2031-01-31");
    assert.is(updated!.account?.password, "br-Kd81mQzp", "the account as the file has it, password included (sealed by the panel)");
    assert.equal(updated!.account?.groups, [1]);
    assert.is(deleted!.status, AccountChangeStatus.APPLIED);
    assert.is(deleted!.account, undefined, "a deleted account is in no file");
  } finally {
    halt.abort();
    await running;
    await emulator.stop();
    await dir.remove();
  }
});

test.run();
