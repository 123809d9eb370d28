import { suite } from "uvu";
import * as assert from "uvu/assert";
import { createDeliveryWindow } from "../../services/agents/delivery-window.js";

const test = suite("the delivery window: at most N commands delivered and unanswered per panel process");

/** Whether `p` has settled by the time the microtasks queued now have run. */
const settled = async (p: Promise<unknown>) => {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
};

test("past the limit a stream waits for its turn; each answer lets the next one in, in the order they asked", async () => {
  const window = createDeliveryWindow({ limit: 2, answerTimeoutMs: 60_000 });
  const a = window.turn("s1");
  const b = window.turn("s1");
  assert.ok(a.granted && b.granted);
  a.delivered(["c1"]);
  b.delivered(["c2"]);
  const c = window.turn("s1");
  const d = window.turn("s1");
  assert.not.ok(c.granted);
  assert.is(await settled(c.ready), false, "no room: it waits");
  assert.equal(window.state(), { inFlight: 2, waiting: 2 });
  window.answered("s1", "c1");
  assert.is(await settled(c.ready), true, "the first to ask gets the room");
  assert.is(await settled(d.ready), false);
  c.delivered([]); // nothing to deliver after all: the room goes back at once
  assert.is(await settled(d.ready), true);
  window.answered("s1", "c1"); // an answer sent twice frees nothing twice
  assert.equal(window.state(), { inFlight: 1, waiting: 0 });
  window.stop();
});

test("a result naming another server's command frees nothing", async () => {
  const window = createDeliveryWindow({ limit: 1, answerTimeoutMs: 60_000 });
  window.turn("s1").delivered(["c1"]);
  const next = window.turn("s2");
  window.answered("s2", "c1");
  assert.is(await settled(next.ready), false, "s2 cannot free s1's room");
  window.answered("s1", "c1");
  assert.is(await settled(next.ready), true);
  window.stop();
});

test("a stream that ends frees its unanswered commands' room; one that gives up waiting leaves the queue", async () => {
  const window = createDeliveryWindow({ limit: 1, answerTimeoutMs: 60_000 });
  const a = window.turn("s1");
  a.delivered(["c1", "c2"]);
  const gaveUp = window.turn("s1");
  const next = window.turn("s1");
  gaveUp.cancel();
  assert.equal(window.state(), { inFlight: 2, waiting: 1 });
  window.abandoned(["c1", "c2"]);
  assert.is(await settled(next.ready), true);
  next.cancel(); // granted and unused: the room goes back
  assert.ok(window.turn("s1").granted);
  window.stop();
});

test("a command unanswered for the answer timeout gives its room to the next", async () => {
  const window = createDeliveryWindow({ limit: 1, answerTimeoutMs: 20 });
  window.turn("s1").delivered(["slow"]);
  const next = window.turn("s1");
  // The window's timers do not keep a process alive; this one does, and bounds the wait.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([next.ready, new Promise((r) => (timer = setTimeout(r, 5000)))]);
  clearTimeout(timer);
  assert.ok(next.granted, "room given after the timeout, not after 5 s");
  window.stop();
});

test.run();
