import { cp } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Client } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import type { AgentService } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { createSyncer } from "../../agent/sync.js";
import { createLogger } from "../../services/lib/log.js";
import { makeTempDir } from "../helpers/cli.js";

const test = suite("the agent's syncer when the agent stops");
const fixtures = resolve(import.meta.dirname, "../fixtures/oscam");
const watchers = () => process.getActiveResourcesInfo().filter((r) => r === "FSEventWrap").length;

test("a sync under way when the agent stops ends at once and starts no watcher (an open one kept a stopped agent alive)", async () => {
  const dir = await makeTempDir("syncer-stop");
  try {
    await cp(join(fixtures, "main"), join(dir.path, "main"), { recursive: true });
    let asked!: () => void;
    const syncAsked = new Promise<void>((r) => (asked = r));
    // A panel that never answers the sync: only the agent stopping can end the call.
    const client = {
      sync: (_req: unknown, options: { signal?: AbortSignal }) =>
        new Promise((_resolve, reject) => {
          asked();
          options.signal?.addEventListener("abort", () => reject(new Error("aborted")), { once: true });
        }),
    } as unknown as Client<typeof AgentService>;
    const before = watchers();
    const syncer = createSyncer({
      client: () => client,
      discovery: { configDirs: [join(dir.path, "main")], unitDirs: [join(dir.path, "no-units")], probeWebif: false },
      log: createLogger({ level: "silent" }),
    });
    const sync = syncer.syncNow();
    await syncAsked;
    syncer.stop();
    // Bounded: without the stop ending it, this sync would wait for ever.
    let guard: NodeJS.Timeout | undefined;
    const ended = await Promise.race([
      sync.then(() => true),
      new Promise<false>((r) => {
        guard = setTimeout(() => r(false), 10_000);
      }),
    ]);
    clearTimeout(guard);
    assert.ok(ended, "the sync under way ended when the agent stopped");
    assert.is(watchers(), before, "no config dir is watched after stop");
    assert.not.ok(syncer.failed, "a sync ended by the stop is not a failure to retry");
  } finally {
    await dir.remove();
  }
});

test.run();
