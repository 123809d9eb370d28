import { suite } from "uvu";
import * as assert from "uvu/assert";
import { connectionCapacity, openFileLimit, reservedDescriptors } from "../../services/lib/file-limit.js";

const test = suite("the open-file limit and the connections it leaves room for");

const limits = (soft: string, hard: string) =>
  `Limit                     Soft Limit           Hard Limit           Units     \nMax processes             unlimited            unlimited            processes \nMax open files            ${soft}                ${hard}                files     \n`;

test("the limit is read from /proc/self/limits, and leaves the reserve out of the connections", () => {
  assert.equal(
    openFileLimit(() => limits("20000", "20000")),
    { soft: 20000, hard: 20000 },
  );
  assert.is(connectionCapacity({ soft: 20000 }), 20000 - reservedDescriptors);
  // This very process: Node raised its soft limit to the hard one.
  const own = openFileLimit();
  assert.ok(own, "this Linux process has a limit");
  assert.is(own!.soft, own!.hard);
});

test("unlimited, missing or garbage: no cap is invented", () => {
  assert.equal(
    openFileLimit(() => limits("unlimited", "unlimited")),
    { soft: Number.POSITIVE_INFINITY, hard: Number.POSITIVE_INFINITY },
  );
  assert.is(connectionCapacity({ soft: Number.POSITIVE_INFINITY }), undefined);
  assert.is(
    openFileLimit(() => "garbage\n\0\0"),
    undefined,
  );
  assert.is(
    openFileLimit(() => limits("many", "more")),
    undefined,
  );
  assert.is(
    openFileLimit(() => {
      throw new Error("ENOENT");
    }),
    undefined,
  );
  assert.is(connectionCapacity(undefined), undefined);
  // A tiny limit still leaves a few connections, not a negative number.
  assert.is(connectionCapacity({ soft: 64 }), 16);
});

test.run();
