import { Code, ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { busyRetryDelayMs, fullJitterDelayMs, retryDelayMs } from "../../services/lib/backoff.js";

const test = suite("retry delays: full-jitter backoff and the panel's retry hint");

test("full jitter waits between 0 and min(cap, base × 2ⁿ)", () => {
  assert.is(
    fullJitterDelayMs(0, 1000, 60_000, () => 0.999),
    999,
  );
  assert.is(
    fullJitterDelayMs(3, 1000, 60_000, () => 0.5),
    4000,
  );
  assert.is(
    fullJitterDelayMs(40, 1000, 60_000, () => 0.5),
    30_000,
  );
  assert.is(
    fullJitterDelayMs(3, 1000, 60_000, () => 0),
    0,
  );
});

test("a refusal with a retry hint is not retried sooner than the hint, and refused callers spread over half the hint again", () => {
  const refused = new ConnectError("busy", Code.Unavailable, new Headers({ "retry-after": "5" }));
  // The backoff alone would retry at once.
  assert.is(
    retryDelayMs(refused, 0, 1000, 60_000, () => 0),
    5000,
  );
  assert.is(
    retryDelayMs(refused, 0, 1000, 60_000, () => 0.999),
    7497,
  );
  // A longer backoff wins over a shorter hint.
  assert.is(
    retryDelayMs(refused, 6, 1000, 60_000, () => 0.5),
    30_000,
  );
});

test("no hint, a garbage hint or no error: the backoff alone; a hint past the cap is held to the cap", () => {
  const plain = new ConnectError("down", Code.Unavailable);
  assert.is(
    retryDelayMs(plain, 2, 1000, 60_000, () => 0.5),
    2000,
  );
  assert.is(
    retryDelayMs(new ConnectError("x", Code.Unavailable, new Headers({ "retry-after": "soon" })), 2, 1000, 60_000, () => 0.5),
    2000,
  );
  assert.is(
    retryDelayMs(new ConnectError("x", Code.Unavailable, new Headers({ "retry-after": "-3" })), 2, 1000, 60_000, () => 0.5),
    2000,
  );
  assert.is(
    retryDelayMs(undefined, 2, 1000, 60_000, () => 0.5),
    2000,
  );
  assert.is(
    retryDelayMs(new ConnectError("x", Code.Unavailable, new Headers({ "retry-after": "3600" })), 0, 1000, 60_000, () => 0),
    60_000,
  );
});

test("a heartbeat turned away busy comes back between the hint and one interval, not on the hint alone", () => {
  const busy = new ConnectError("busy", Code.Unavailable, new Headers({ "retry-after": "5" }));
  // [interval, random, delay]; an interval shorter than the hint: the hint.
  const cases: Array<[number, number, number]> = [
    [60_000, 0, 5000],
    [60_000, 0.5, 32_500],
    [60_000, 0.999, 59_945],
    [2000, 0.9, 5000],
  ];
  for (const [intervalMs, random, delayMs] of cases)
    assert.is(
      busyRetryDelayMs(busy, intervalMs, () => random),
      delayMs,
      `interval ${intervalMs}, random ${random}`,
    );
  assert.is(busyRetryDelayMs(new ConnectError("connection refused", Code.Unavailable), 60_000), undefined, "no hint: not busy");
});

test.run();
