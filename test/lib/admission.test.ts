import { Code } from "@connectrpc/connect";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { admissionRetryAfterMaxSeconds, admissionRetryAfterSeconds, createAdmission } from "../../services/lib/admission.js";
import { captureLogs } from "../helpers/log-capture.js";

/** Admission control on a clock the test moves: no call waits in real time. */
function admissionAt(options: { maxPendingCalls?: number; queueLimit?: { calls: number; waitMs: number } }) {
  let clock = 0;
  const logs = captureLogs();
  const admission = createAdmission({ ...options, log: logs.log, now: () => clock });
  const admit = () => {
    const answer = admission.admit();
    if ("refusal" in answer) return { refusal: answer.refusal };
    return { ticket: answer.ticket };
  };
  return {
    admission,
    admit,
    logs,
    /** Moves the clock to `ms`. */
    at(ms: number) {
      clock = ms;
    },
    /** Takes on `n` calls now; answers their tickets (each must be admitted). */
    take(n: number): number[] {
      return Array.from({ length: n }, () => {
        const answer = admit();
        assert.ok(answer.ticket !== undefined, `call taken on: ${answer.refusal?.rawMessage}`);
        return answer.ticket!;
      });
    },
  };
}

/** The retry hint of a refusal, seconds. */
const hintOf = (answer: { refusal?: { code: Code; metadata: Headers } }) => {
  assert.is(answer.refusal?.code, Code.Unavailable);
  return Number(answer.refusal!.metadata.get("retry-after"));
};

test("refused callers are told to come back at different times, paced at the rate a busy listener answers: from 5 s, never past 60 s", () => {
  const a = admissionAt({ maxPendingCalls: 100, queueLimit: { calls: 100, waitMs: 5000 } });
  // Busy for a second (100 pending), answering 200 calls in it.
  const tickets = a.take(100);
  for (let i = 0; i < 200; i++) {
    a.at(i * 5);
    a.admission.release(tickets.shift()!);
    tickets.push(...a.take(1));
  }
  a.at(1000);
  const hints = Array.from({ length: 20_000 }, () => hintOf(a.admit()));
  assert.is(hints[0], admissionRetryAfterSeconds, "the first refused is told the shortest wait");
  for (let i = 1; i < hints.length; i++) assert.ok(hints[i]! >= hints[i - 1]!, "no one is told to come back before someone refused earlier");
  // At 200 answers a second, 200 refused callers per second of the schedule.
  assert.is(hints[1000], 10, `the 1,000th refused comes back 5 s after the first (${hints[1000]})`);
  assert.is(hints.filter((h) => h === 7).length, 200, "each second of the schedule holds as many as the panel answers in a second");
  assert.is(hints.at(-1), admissionRetryAfterMaxSeconds, "a caller is never told to wait longer than an agent's backoff honours");
  assert.match(a.admit().refusal!.rawMessage, /busy \(100 calls waiting\); try again in 60 s/);
});

test("the schedule starts again from 5 s once it has passed", () => {
  const a = admissionAt({ maxPendingCalls: 10 });
  a.take(10);
  const first = Array.from({ length: 300 }, () => hintOf(a.admit()));
  assert.ok(first.at(-1)! > admissionRetryAfterSeconds, `hints grew (${first.at(-1)} s)`);
  a.at(120_000);
  assert.is(hintOf(a.admit()), admissionRetryAfterSeconds, "a refusal long after the last is told the shortest wait again");
});

test("a young backlog is refused before it grows old: when at the rate the busy listener answers the newest call would wait longer than the queue limit", () => {
  const a = admissionAt({ queueLimit: { calls: 10, waitMs: 1000 } });
  // Busy (10 pending) for 5 s, answering 112 calls in it: 22.4 a second.
  const tickets = a.take(10);
  for (let i = 0; i < 112; i++) {
    a.at(i * 44);
    a.admission.release(tickets.shift()!);
    tickets.push(...a.take(1));
  }
  a.at(5000);
  // 22 pending is under 1 s of work: taken on; with 23 pending it is more.
  a.take(13);
  const refused = a.admit();
  assert.is(hintOf(refused), admissionRetryAfterSeconds);
  assert.match(refused.refusal!.rawMessage, /busy \(23 calls waiting, about 1 s of work\)/);
  assert.ok(
    a.logs.lines().some((l) => String(l.msg).startsWith("overloaded: refusing new calls") && /about 1 s of work/.test(String(l.why))),
    a.logs.text(),
  );
});

test("a herd arriving after a quiet time is taken on for its size alone until the listener has been busy a second; the log says when refusing ends, once, after 5 s without a refusal", () => {
  const a = admissionAt({ queueLimit: { calls: 10, waitMs: 5000 } });
  // 40 at once with nothing answered: what the listener can do is not known yet.
  const tickets = a.take(40);
  a.at(1100);
  // Busy a second and nothing answered: the rate is taken to be the queue limit's, 2 a second.
  const refused = a.admit();
  assert.match(refused.refusal!.rawMessage, /busy \(40 calls waiting, about 20 s of work\)/);
  assert.ok(a.admit().refusal);
  a.at(1200);
  for (const t of tickets) a.admission.release(t);
  assert.ok(a.admit().ticket !== undefined, "taken on again once the herd is answered");
  const ended = () => a.logs.lines().filter((l) => l.msg === "accepting new calls again");
  assert.is(ended().length, 0, "a moment after the last refusal the spell is not yet said to be over");
  a.at(6200);
  a.take(1);
  a.take(1);
  const again = ended();
  assert.is(again.length, 1);
  assert.is(again[0]!.refused, 2);
});

test("a few slow calls are no backlog: fewer pending than the queue limit's calls are always taken on", () => {
  const a = admissionAt({ queueLimit: { calls: 10, waitMs: 1000 } });
  a.take(9);
  a.at(3_600_000);
  assert.ok(a.admit().ticket !== undefined, "9 calls waiting an hour do not refuse a 10th");
});

test.run();
