import { test } from "uvu";
import * as assert from "uvu/assert";
import { deafSpans } from "../../services/agents/alerts.js";

const at = (s: number) => new Date(Date.UTC(2026, 0, 1) + s * 1000);
const spell = (from: number, last: number) => ({ started_at: at(from), last_refused_at: at(last) });
const seconds = (spans: ReturnType<typeof deafSpans>) =>
  spans.map((s) => [(s.from.getTime() - at(0).getTime()) / 1000, (s.to.getTime() - at(0).getTime()) / 1000]);

test("a spell is deaf from its first refusal until one interval and 5 s after its last", () => {
  assert.equal(seconds(deafSpans([spell(100, 200)], 60)), [[100, 265]]);
});

test("spells that overlap once stretched (two replicas refusing together) merge, in any order; apart ones stay apart", () => {
  assert.equal(seconds(deafSpans([spell(1000, 1100), spell(100, 200), spell(250, 300), spell(150, 180)], 60)), [
    [100, 365],
    [1000, 1165],
  ]);
});

test("no spells, no deafness", () => {
  assert.equal(deafSpans([], 60), []);
});

test.run();
