import { Code } from "@connectrpc/connect";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { admissionRetryAfterSeconds, createAdmission, type RefusalSpell } from "../../services/lib/admission.js";
import { captureLogs } from "../helpers/log-capture.js";

/** Admission control on a clock the test moves: no call waits in real time. */
function admissionAt(options: { maxPendingCalls?: number; queueLimit?: { calls: number; waitMs: number } }) {
  let clock = 0;
  const logs = captureLogs();
  const spells: RefusalSpell[] = [];
  const admission = createAdmission({ ...options, log: logs.log, now: () => clock, onSpell: (s) => void spells.push(s) });
  const admit = () => {
    const answer = admission.admit();
    if ("refusal" in answer) return { refusal: answer.refusal };
    return { ticket: answer.ticket };
  };
  return {
    admission,
    admit,
    logs,
    /** What `onSpell` was told, in order. */
    spells,
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

test("a backlog is refused once the queue limit's calls have waited longer than its wait, with a 5 s retry hint and no stack trace", () => {
  const a = admissionAt({ queueLimit: { calls: 10, waitMs: 1000 } });
  a.take(40);
  a.at(900);
  assert.ok(a.admit().ticket !== undefined, "a young backlog is still taken on");
  a.at(1100);
  const refused = a.admit();
  assert.is(hintOf(refused), admissionRetryAfterSeconds);
  assert.match(refused.refusal!.rawMessage, /busy \(41 calls waiting, 10 of them over 1 s\); try again in 5 s/);
  assert.not.match(String((refused.refusal as Error).stack), /\n\s+at /, "a refusal carries no stack trace");
  assert.ok(a.logs.lines().some((l) => String(l.msg).startsWith("overloaded: refusing new calls")));
});

test("the log says once when a spell of refusing is over, after 5 s without a refusal, however often the backlog dipped meanwhile", () => {
  const a = admissionAt({ maxPendingCalls: 10 });
  const tickets = a.take(10);
  assert.ok(a.admit().refusal);
  // The backlog dips and comes back: still one spell.
  a.at(100);
  a.admission.release(tickets.shift()!);
  tickets.push(...a.take(1));
  assert.ok(a.admit().refusal);
  a.at(200);
  for (const t of tickets) a.admission.release(t);
  assert.ok(a.admit().ticket !== undefined, "taken on again once the calls are answered");
  const ended = () => a.logs.lines().filter((l) => l.msg === "accepting new calls again");
  assert.is(ended().length, 0, "a moment after the last refusal the spell is not yet said to be over");
  a.at(5300);
  a.take(1);
  a.take(1);
  assert.is(ended().length, 1);
  assert.is(ended()[0]!.refused, 2);
  assert.is(a.logs.lines().filter((l) => String(l.msg).startsWith("overloaded: refusing new calls")).length, 1);
});

test("a spell of refusing is told when it starts, every 5 s while it goes on, and when it is over, with its first and last refusal", () => {
  const a = admissionAt({ maxPendingCalls: 1 });
  const [ticket] = a.take(1);
  a.at(1000);
  assert.ok(a.admit().refusal);
  for (const at of [2000, 3000, 5999]) {
    a.at(at);
    assert.ok(a.admit().refusal);
  }
  assert.equal(a.spells, [{ startedAt: 1000, lastRefusedAt: 1000, refused: 1, over: false }], "refusals within 5 s of the last report are not told one by one");
  a.at(6000);
  assert.ok(a.admit().refusal);
  assert.equal(a.spells.at(-1), { startedAt: 1000, lastRefusedAt: 6000, refused: 5, over: false });
  a.admission.release(ticket!);
  a.at(10_999);
  a.admission.release(a.take(1)[0]!);
  assert.is(a.spells.length, 2, "under 5 s after the last refusal it is not over");
  a.at(11_000);
  a.take(1);
  assert.equal(a.spells.at(-1), { startedAt: 1000, lastRefusedAt: 6000, refused: 5, over: true });
  assert.is(a.spells.length, 3);
});

test("a few slow calls are no backlog: fewer pending than the queue limit's calls are always taken on", () => {
  const a = admissionAt({ queueLimit: { calls: 10, waitMs: 1000 } });
  a.take(9);
  a.at(3_600_000);
  assert.ok(a.admit().ticket !== undefined, "9 calls waiting an hour do not refuse a 10th");
});

test.run();
