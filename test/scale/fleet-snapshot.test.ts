import { create } from "@bufbuild/protobuf";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { AccountChangeSchema, AccountOperation } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { instanceSnapshots, withAccountChanges } from "../../bench/fleet/snapshot.js";

const change = (operation: AccountOperation, user: string, set: Record<string, string> = {}, unset: string[] = []) =>
  create(AccountChangeSchema, { operation, user, set: Object.entries(set).map(([key, value]) => ({ key, value })), unset });

test("an emulated agent's instance after an account change: the changed fields, a new content hash, the same hash for the same content", () => {
  const [before] = instanceSnapshots(42, [1, 1], [5, 5]);
  const after = withAccountChanges(before!, [change(AccountOperation.UPDATE, "main-user0", { description: "moved to the kitchen", pwd: "new", tier: "gold" })]);
  const account = after.accounts.find((a) => a.user === "main-user0")!;
  assert.is(account.description, "moved to the kitchen");
  assert.is(account.password, "new");
  assert.equal(
    account.extra.map((s) => [s.key, s.value]),
    [["tier", "gold"]],
  );
  assert.is.not(after.ref!.contentHash, before!.ref!.contentHash, "the panel is sent the snapshot again");
  assert.is(before!.accounts.find((a) => a.user === "main-user0")!.description, "box 0 on main", "the snapshot it started from is left as it was");
  const again = withAccountChanges(before!, [change(AccountOperation.UPDATE, "main-user0", { description: "moved to the kitchen", pwd: "new", tier: "gold" })]);
  assert.is(again.ref!.contentHash, after.ref!.contentHash);
});

test("an emulated agent's instance: add, disable, delete, and a change to an account it does not have is skipped", () => {
  const [before] = instanceSnapshots(7, [1, 1], [3, 3]);
  const after = withAccountChanges(before!, [
    change(AccountOperation.ADD, "newcomer", { pwd: "p", group: "1,3", disabled: "1" }),
    change(AccountOperation.DISABLE, "main-user1"),
    change(AccountOperation.DELETE, "main-user2"),
    change(AccountOperation.UPDATE, "nobody", { pwd: "x" }),
  ]);
  assert.equal(
    after.accounts.map((a) => [a.user, a.enabled]),
    [
      ["main-user0", before!.accounts[0]!.enabled],
      ["main-user1", false],
      ["newcomer", false],
    ],
  );
  assert.equal(after.accounts.at(-1)!.groups, [1, 3]);
});

test.run();
