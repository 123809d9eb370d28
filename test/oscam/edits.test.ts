import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { applyAccountChanges, editAccounts } from "../../agent/oscam/account-edits.js";
import { setKey, unsetKey } from "../../agent/oscam/edit.js";
import { parseOscamFile, printOscamFile, type OscamDocument } from "../../agent/oscam/document.js";
import { readUserFile } from "../../agent/oscam/user-file.js";

const fixtures = resolve(import.meta.dirname, "../fixtures/oscam");
const doc = (instance: string, file = "oscam.user") => parseOscamFile(readFileSync(join(fixtures, instance, file)), file);
const text = (d: OscamDocument) => printOscamFile(d).toString("latin1");
const lines = (d: OscamDocument) => text(d).split("\n");

/** The lines of `after` that are not in `before` and vice versa (a line diff by multiset). */
function changedLines(before: OscamDocument, after: OscamDocument) {
  const count = (list: string[]) => list.reduce((m, l) => m.set(l, (m.get(l) ?? 0) + 1), new Map<string, number>());
  const a = count(lines(before));
  const b = count(lines(after));
  const removed = [...a].flatMap(([l, n]) => Array(Math.max(0, n - (b.get(l) ?? 0))).fill(l));
  const added = [...b].flatMap(([l, n]) => Array(Math.max(0, n - (a.get(l) ?? 0))).fill(l));
  return { removed, added };
}

const test = suite("minimal edits of oscam.user and oscam.conf");

test("updating a password changes that one line, keeping the 30-column style", () => {
  const before = doc("main");
  const after = applyAccountChanges(before, [{ op: "update", user: "bedroom", set: { pwd: "new-Secret-1" } }]);
  assert.equal(changedLines(before, after), {
    removed: ["pwd                           = br-Kd81mQzp"],
    added: ["pwd                           = new-Secret-1"],
  });
  assert.is(readUserFile(after).accounts.find((a) => a.user === "bedroom")!.pwd, "new-Secret-1");
});

test("a key the account lacks is added after its last key, in the file's style", () => {
  const before = doc("main");
  const after = applyAccountChanges(before, [{ op: "update", user: "bedroom", set: { expdate: "2027-01-31" } }]);
  assert.equal(changedLines(before, after), { removed: [], added: ["expdate                       = 2027-01-31"] });
  const l = lines(after);
  assert.is(l[l.indexOf("expdate                       = 2027-01-31") - 1], "sleep                         = 240", "right after the account's last key");
});

test("in a CRLF file with odd spacing, an edit keeps CRLF and the line's own spacing", () => {
  const before = doc("messy");
  const after = applyAccountChanges(before, [{ op: "update", user: "carol", set: { pwd: "x-1" } }]);
  assert.equal(changedLines(before, after), { removed: ["   pwd   =   c4r0l-dev-Pw   \r"], added: ["   pwd   =   x-1\r"] });
});

test("a duplicated key is set where OScam reads it (the last), and unset removes every copy", () => {
  const before = doc("messy");
  const set = applyAccountChanges(before, [{ op: "update", user: "carol", set: { group: "5" } }]);
  assert.equal(changedLines(before, set), { removed: ["group = 2\r"], added: ["group = 5\r"] });
  assert.equal(readUserFile(set).accounts[0]!.group, [5]);
  const unset = applyAccountChanges(before, [{ op: "update", user: "carol", unset: ["group"] }]);
  assert.equal(changedLines(before, unset), { removed: ["group = 1\r", "group = 2\r"], added: [] });
  assert.equal(readUserFile(unset).accounts[0]!.group, []);
});

test("disable, enable, add and delete an account touch only their lines", () => {
  const before = doc("main");
  const disabled = applyAccountChanges(before, [{ op: "disable", user: "bedroom" }]);
  assert.equal(changedLines(before, disabled).added, ["disabled                      = 1"]);
  const enabled = applyAccountChanges(disabled, [{ op: "enable", user: "bedroom" }]);
  assert.is(text(enabled), text(before));

  const added = applyAccountChanges(before, [{ op: "add", user: "newbox", set: { pwd: "nb-1", group: "1" } }]);
  assert.ok(text(added).startsWith(text(before)), "appended at the end");
  assert.is(
    text(added).slice(text(before).length),
    "\n[account]\nuser                          = newbox\npwd                           = nb-1\ngroup                         = 1\n",
  );
  const removed = applyAccountChanges(added, [{ op: "delete", user: "newbox" }]);
  assert.is(text(removed), text(before), "deleting what was added gives the original back");

  const middle = applyAccountChanges(before, [{ op: "delete", user: "bedroom" }]);
  const names = readUserFile(middle).accounts.map((a) => a.user);
  assert.not.ok(names.includes("bedroom"));
  assert.is(names.length, readUserFile(before).accounts.length - 1);
  assert.not.match(text(middle), /\n\n\n/, "no double blank line left behind");
});

test("values that would break the file are refused, and an unknown account is named", () => {
  const before = doc("main");
  assert.throws(() => applyAccountChanges(before, [{ op: "update", user: "bedroom", set: { pwd: "a\nb" } }]), /may not contain a line break/);
  assert.throws(() => applyAccountChanges(before, [{ op: "update", user: "bedroom", set: { "bad key": "1" } }]), /is not a key OScam can read/);
  assert.throws(() => applyAccountChanges(before, [{ op: "disable", user: "ghost" }]), /there is no account "ghost"/);
  assert.throws(() => applyAccountChanges(before, [{ op: "add", user: "bedroom", set: {} }]), /exists already/);
});

test("oscam.conf: set and unset keys of a section; keys before any header belong to [global]", () => {
  const before = doc("main", "oscam.conf");
  const webif = before.lines.findIndex((l) => l.kind === "section" && l.section === "webif");
  const after = setKey(before, webif, "httprefresh", "30");
  assert.is(changedLines(before, after).added.length, 1);
  assert.match(changedLines(before, after).added[0]!, /^httprefresh\s*= 30$/);
  const without = unsetKey(after, webif, "httprefresh");
  assert.not.match(text(without), /httprefresh/);
});

test("a UTF-8 description round-trips byte for byte and reads as text", () => {
  const before = doc("main");
  const after = applyAccountChanges(before, [{ op: "update", user: "bedroom", set: { description: "Küche 東京 🎉" } }]);
  assert.is(readUserFile(after).accounts.find((a) => a.user === "bedroom")!.description, "Küche 東京 🎉");
  const again = parseOscamFile(printOscamFile(after), "oscam.user");
  assert.ok(printOscamFile(again).equals(printOscamFile(after)));
});

test("5,000 accounts: parsed, edited and printed, with only the edited line changed", () => {
  let source = "# generated\n";
  for (let i = 0; i < 5000; i++) source += `\n[account]\nuser = u${i}\npwd = p${i}\ngroup = ${(i % 64) + 1}\ncaid = 0963\n`;
  const before = parseOscamFile(Buffer.from(source), "oscam.user");
  assert.ok(printOscamFile(before).equals(Buffer.from(source)));
  assert.is(readUserFile(before).accounts.length, 5000);
  const after = applyAccountChanges(before, [{ op: "update", user: "u4999", set: { pwd: "changed" } }]);
  assert.equal(changedLines(before, after), { removed: ["pwd = p4999"], added: ["pwd = changed"] });
});

test("deleting an account keeps the commented-out account block after it", () => {
  const source = "[account]\nuser = a\npwd = pa\n\n#[account]\n#user = old\n#pwd = gone\n\n[account]\nuser = b\npwd = pb\n";
  const after = applyAccountChanges(parseOscamFile(Buffer.from(source), "oscam.user"), [{ op: "delete", user: "a" }]);
  assert.is(text(after), "#[account]\n#user = old\n#pwd = gone\n\n[account]\nuser = b\npwd = pb\n");
  // A comment between an account's own keys is the account's, and goes with it.
  const inside = "[account]\nuser = a\n# the password of a\npwd = pa\n\n[account]\nuser = b\n";
  assert.is(text(applyAccountChanges(parseOscamFile(Buffer.from(inside), "oscam.user"), [{ op: "delete", user: "a" }])), "[account]\nuser = b\n");
  // A note about the next account, right above its header, stays with the file when the one before goes.
  const note = "[account]\nuser = a\n\n# bob pays yearly\n[account]\nuser = b\n";
  assert.is(
    text(applyAccountChanges(parseOscamFile(Buffer.from(note), "oscam.user"), [{ op: "delete", user: "a" }])),
    "# bob pays yearly\n[account]\nuser = b\n",
  );
  const last = "[account]\nuser = a\n\n[account]\nuser = b\npwd = pb\n\n# end of list\n";
  assert.is(
    text(applyAccountChanges(parseOscamFile(Buffer.from(last), "oscam.user"), [{ op: "delete", user: "b" }])),
    "[account]\nuser = a\n\n# end of list\n",
  );
});

test("an account added to a file aligned with TABs is aligned with TABs", () => {
  const source = "[account]\nuser\t\t= a\npwd\t\t= pa\ndescription\t= first\n\n[account]\nuser\t\t= b\npwd\t\t= pb\n";
  const before = parseOscamFile(Buffer.from(source), "oscam.user");
  const added = applyAccountChanges(before, [{ op: "add", user: "c", set: { pwd: "pc", description: "third", max_connections: "2" } }]);
  assert.is(text(added).slice(source.length), "\n[account]\nuser\t\t= c\npwd\t\t= pc\ndescription\t= third\nmax_connections\t= 2\n");
  const updated = applyAccountChanges(before, [{ op: "update", user: "b", set: { group: "1" } }]);
  assert.equal(changedLines(before, updated).added, ["group\t\t= 1"]);
  assert.equal(readUserFile(added).accounts.at(-1)!.raw, { user: "c", pwd: "pc", description: "third", max_connections: "2" });
});

test("user names OScam loads (spaces, =, #, UTF-8, 63 bytes) can be edited; what it would not read as given is refused", () => {
  const names = ["living room", "a=b", "#hash", "semi;colon", "[x]", "Küche 東京", "x".repeat(63)];
  let source = "";
  for (const n of names) source += `[account]\nuser = ${n}\npwd = p\n\n`;
  const before = parseOscamFile(Buffer.from(source, "utf8"), "oscam.user");
  assert.equal(
    readUserFile(before).accounts.map((a) => a.user),
    names,
  );
  const after = applyAccountChanges(
    before,
    names.map((user) => ({ op: "disable" as const, user })),
  );
  assert.ok(readUserFile(after).accounts.every((a) => a.disabled));
  const added = applyAccountChanges(before, [{ op: "add", user: "new box", set: { pwd: "q" } }]);
  assert.is(readUserFile(added).accounts.at(-1)!.user, "new box");
  for (const [bad, why] of [
    [" lead", /start or end with a space/],
    ["trail\t", /start or end with a space/],
    ["a\nb", /line break/],
    ["x".repeat(64), /64 bytes long; OScam keeps at most 63/],
    ["", /empty/],
  ] as const) {
    assert.throws(() => applyAccountChanges(before, [{ op: "add", user: bad, set: {} }]), why);
  }
});

test("10,000 changes to a file of 10,000 accounts are applied in one pass, each where it belongs", () => {
  let source = "";
  for (let i = 0; i < 10_000; i++) source += `[account]\nuser = u${i}\npwd = p${i}\ngroup = 1\n\n`;
  const before = parseOscamFile(Buffer.from(source), "oscam.user");
  const changes = Array.from({ length: 10_000 }, (_, i) =>
    i % 4 === 0
      ? { op: "update" as const, user: `u${i}`, set: { pwd: `new${i}` } }
      : i % 4 === 1
        ? { op: "disable" as const, user: `u${i}` }
        : i % 4 === 2
          ? { op: "delete" as const, user: `u${i}` }
          : { op: "add" as const, user: `n${i}`, set: { pwd: `q${i}` } },
  );
  const accounts = readUserFile(applyAccountChanges(before, changes)).accounts;
  const byName = new Map(accounts.map((a) => [a.user, a]));
  assert.is(accounts.length, 10_000);
  assert.is(byName.get("u0")!.pwd, "new0");
  assert.ok(byName.get("u1")!.disabled);
  assert.not.ok(byName.has("u2"));
  assert.is(byName.get("n3")!.pwd, "q3");
  assert.is(byName.get("u9999")!.pwd, "p9999");
});

test("deleting one of two accounts with the same name renames the other as OScam would load it", () => {
  const source = "[account]\nuser = a\npwd = 1\n\n[account]\nuser = a\npwd = 2\n";
  const before = parseOscamFile(Buffer.from(source), "oscam.user");
  assert.equal(
    readUserFile(before).accounts.map((a) => a.user),
    ["a", "a_x"],
  );
  const after = applyAccountChanges(before, [
    { op: "delete", user: "a" },
    { op: "update", user: "a", set: { pwd: "3" } },
  ]);
  assert.equal(
    readUserFile(after).accounts.map((a) => [a.user, a.pwd]),
    [["a", "3"]],
  );
});

test("independent changes: one that cannot be made is reported and skipped, the others applied, each with its keys before and after", () => {
  const before = parseOscamFile(Buffer.from("[account]\nuser = a\npwd = pa\n\n[account]\nuser = b\npwd = pb\ngroup = 1\n"), "oscam.user");
  const { doc, reports } = editAccounts(
    before,
    [
      { op: "disable", user: "ghost" },
      { op: "update", user: "b", set: { group: "2", "bad key": "x" } },
      { op: "update", user: "b", set: { group: "2" } },
      { op: "enable", user: "a" },
    ],
    { independent: true },
  );
  assert.equal(
    reports.map((r) => r.status),
    ["failed", "failed", "applied", "unchanged"],
  );
  assert.match(reports[0]!.reason!, /no account "ghost"/);
  assert.equal(reports[2]!.before, { user: "b", pwd: "pb", group: "1" });
  assert.equal(reports[2]!.after, { user: "b", pwd: "pb", group: "2" });
  assert.is(text(doc), "[account]\nuser = a\npwd = pa\n\n[account]\nuser = b\npwd = pb\ngroup = 2\n", "the refused update left no half edit");
});

test("a deleted account re-created before the account that followed it is back byte for byte", () => {
  const source = "[account]\nuser = a\npwd = pa\n\n[account]\nuser = b\npwd = pb\ndescription = middle\n\n[account]\nuser = c\npwd = pc\n";
  const deleted = editAccounts(parseOscamFile(Buffer.from(source), "oscam.user"), [{ op: "delete", user: "b" }], { independent: true });
  assert.is(deleted.reports[0]!.followedBy, "c");
  const { user: _user, ...set } = deleted.reports[0]!.before!;
  const back = applyAccountChanges(deleted.doc, [{ op: "add", user: "b", set, beforeUser: "c" }]);
  assert.is(text(back), source);
});

test.run();
