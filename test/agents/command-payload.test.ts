import { Code, ConnectError } from "@connectrpc/connect";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { checkPayload, maxCommandPayloadBytes } from "../../services/agents/commands.js";

const refusal = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("not refused");
};
const disable = (user: string) => ({ changes: [{ operation: "ACCOUNT_OPERATION_DISABLE", user }] });

test("a command may name any account OScam loads: spaces, =, #, [ ], ;, UTF-8, 63 bytes", () => {
  for (const user of ["living room", "a=b", "#1", "[x]", "semi;colon", "Küche 東京", "x".repeat(63), "tab\tinside"]) {
    assert.equal(checkPayload("apply_accounts", disable(user)).kind, "apply_accounts", user);
  }
});

test("a user name OScam would not read as given is refused, naming the field", () => {
  for (const user of [" leading", "trailing ", "two\nlines", "nul\u0000", "x".repeat(64), "ü".repeat(32)]) {
    const err = refusal(() => checkPayload("apply_accounts", disable(user)));
    assert.is(err.code, Code.InvalidArgument, JSON.stringify(user));
    assert.match(err.message, /changes\[0\]\.user/);
  }
});

test("a payload larger than one command carries is refused with what to do", () => {
  const value = "v".repeat(4000);
  const changes = Array.from({ length: Math.ceil(maxCommandPayloadBytes / (64 * 4000)) + 1 }, (_, i) => ({
    operation: "ACCOUNT_OPERATION_UPDATE",
    user: `u${i}`,
    set: Array.from({ length: 64 }, (_, k) => ({ key: `k${k}`, value })),
  }));
  const err = refusal(() => checkPayload("apply_accounts", { changes }));
  assert.is(err.code, Code.InvalidArgument);
  assert.match(err.message, /more than one command carries \(8 MB\); split the changes into several commands/);
});

test.run();
