import { appendFile, cp } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Client } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import type { AgentService } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { createSyncer } from "../../agent/sync.js";
import { resyncDelayMs } from "../../agent/timing.js";
import { createLogger } from "../../services/lib/log.js";
import { makeTempDir } from "../helpers/cli.js";
import { eventually } from "../helpers/eventually.js";

const test = suite("the agent's resync after a change it reported: later, spread, and never put off for good");
const fixtures = resolve(import.meta.dirname, "../fixtures/oscam");

/** A syncer over the fixture's instance whose panel records when each sync came. */
async function recordingSyncer() {
  const dir = await makeTempDir("resync-later");
  await cp(join(fixtures, "main"), join(dir.path, "main"), { recursive: true });
  const calls: number[] = [];
  let called: (() => void) | undefined;
  const client = {
    sync: async () => {
      calls.push(Date.now());
      called?.();
      return { resend: [] };
    },
  } as unknown as Client<typeof AgentService>;
  const syncer = createSyncer({
    client: () => client,
    discovery: { configDirs: [join(dir.path, "main")], unitDirs: [join(dir.path, "no-units")], probeWebif: false },
    log: createLogger({ level: "debug", destination: { write: (line: string) => void lines.push(line) } }),
  });
  const lines: string[] = [];
  const nextCall = () => new Promise<void>((r) => (called = r));
  let edits = 0;
  return {
    syncer,
    calls,
    nextCall,
    /** How many passes found nothing to send (and sent nothing). */
    skipped: () => lines.filter((l) => l.includes("no sync sent")).length,
    /** Changes oscam.user as a hand edit would (a new account at the end). */
    edit: () => appendFile(join(dir.path, "main", "oscam.user"), `\n[account]\nuser = by-hand-${++edits}\npwd = x\n`),
    async close() {
      syncer.stop();
      await dir.remove();
    },
  };
}

test("a resync asked for later comes after its delay; a config change meanwhile and a second change's request are folded into it, not put later", async () => {
  const r = await recordingSyncer();
  try {
    await r.syncer.syncNow();
    assert.is(r.calls.length, 1, "the first sync");
    const asked = Date.now();
    const next = r.nextCall();
    r.syncer.later(1500);
    // An outside edit's trigger during the hold waits for it; a second reported change does not extend it.
    r.syncer.trigger(0);
    r.syncer.later(600_000);
    let guard: NodeJS.Timeout | undefined;
    const came = await Promise.race([next.then(() => true), new Promise<false>((res) => (guard = setTimeout(() => res(false), 30_000)))]);
    clearTimeout(guard);
    assert.ok(came, "the resync came within 30 s: the second request did not put it off");
    assert.ok(r.calls[1]! - asked >= 1500, `not before the delay (${r.calls[1]! - asked} ms)`);
    // Nothing else was pending: the three requests made one sync.
    await r.syncer.settled();
    assert.is(r.calls.length, 2, "one sync for the three requests");
  } finally {
    await r.close();
  }
});

test("once the hold has ended, a trigger syncs at its own pace again", async () => {
  const r = await recordingSyncer();
  try {
    await r.syncer.syncNow();
    let next = r.nextCall();
    r.syncer.later(200);
    await next;
    next = r.nextCall();
    await r.edit();
    const asked = Date.now();
    r.syncer.trigger(0);
    await next;
    assert.ok(r.calls[2]! - asked < 200 + 5000, "not held by the hold that ended");
    assert.is(r.calls.length, 3);
  } finally {
    await r.close();
  }
});

test("the resync's delay: between 2 s and MYOSICAM_AGENT_RESYNC_SPREAD_SECONDS (60 by default), 0 for at once; a wrong value is refused by name", () => {
  assert.is(
    resyncDelayMs({}, () => 0),
    2000,
  );
  assert.is(
    resyncDelayMs({}, () => 0.999999),
    60_000,
  );
  assert.is(
    resyncDelayMs({ MYOSICAM_AGENT_RESYNC_SPREAD_SECONDS: "10" }, () => 0.5),
    6000,
  );
  assert.is(
    resyncDelayMs({ MYOSICAM_AGENT_RESYNC_SPREAD_SECONDS: "0" }, () => 0.7),
    0,
  );
  assert.is(
    resyncDelayMs({ MYOSICAM_AGENT_RESYNC_SPREAD_SECONDS: "1" }, () => 0.5),
    1000,
  );
  for (const bad of ["-1", "1.5", "soon", "3601"]) {
    assert.throws(() => resyncDelayMs({ MYOSICAM_AGENT_RESYNC_SPREAD_SECONDS: bad }), /MYOSICAM_AGENT_RESYNC_SPREAD_SECONDS must be a whole number/);
  }
});

test("a trigger that finds nothing changed sends nothing; one after a hand edit sends it; a request, a retry and a resync later send the hashes anyway", async () => {
  const r = await recordingSyncer();
  try {
    await r.syncer.syncNow();
    assert.is(r.calls.length, 1);
    // The file saved as it was (or the agent's own write of a change the panel took): no call.
    r.syncer.trigger(0);
    await eventually(
      async () => r.skipped(),
      (n) => n === 1,
      "the pass that found nothing changed",
    );
    assert.is(r.calls.length, 1, "nothing the panel does not hold: nothing sent");
    await r.edit();
    let next = r.nextCall();
    r.syncer.trigger(0);
    await next;
    assert.is(r.calls.length, 2, "a hand edit is sent");
    await r.syncer.syncNow();
    assert.is(r.calls.length, 3, "a request (start, a resync command) sends the hashes though nothing changed");
    next = r.nextCall();
    r.syncer.later(0);
    await next;
    assert.is(r.calls.length, 4, "so does the resync after a change the panel did not take");
  } finally {
    await r.close();
  }
});

test.run();
