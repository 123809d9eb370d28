import { suite } from "uvu";
import * as assert from "uvu/assert";
import { readConfFile } from "../../agent/oscam/conf-file.js";
import { parseOscamFile, printOscamFile } from "../../agent/oscam/document.js";
import { summariseServerFile } from "../../agent/oscam/server-file.js";
import { isExpired, readUserFile } from "../../agent/oscam/user-file.js";

const test = suite("OSCAM.md §8: the hard cases, read as OScam reads them");
const users = (text: string | Buffer) => readUserFile(parseOscamFile(Buffer.isBuffer(text) ? text : Buffer.from(text), "oscam.user"));
const conf = (text: string) => readConfFile(parseOscamFile(Buffer.from(text), "oscam.conf"));

test("duplicate user names load as name_x, also when repeated inside one section; names are case-sensitive", () => {
  const { accounts, warnings } = users("[account]\nuser = alice\n[account]\nuser = alice\n[account]\nuser = Alice\n[account]\nuser = bob\nuser = bob\n");
  assert.equal(
    accounts.map((a) => a.user),
    ["alice", "alice_x", "Alice", "bob_x"],
  );
  assert.ok(warnings.some((w) => w.message === 'duplicate account name "alice": OScam loads it as "alice_x"'));
});

test("a commented-out header with live keys below merges them into the previous account", () => {
  const { accounts } = users("[account]\nuser = a\npwd = 1\n#[account]\nuser = b\n");
  assert.equal(
    accounts.map((a) => [a.user, a.pwd]),
    [["b", "1"]],
    "one account: its user overwritten",
  );
});

test("disabled: any non-zero number disables; 'yes' reads as 0", () => {
  const { accounts } = users("[account]\nuser = a\ndisabled = yes\n[account]\nuser = b\ndisabled = 2\n[account]\nuser = c\ndisabled = -1\n");
  assert.equal(
    accounts.map((a) => a.disabled),
    [false, true, true],
  );
});

test("expdate: '-' or '/', single digits, valid through its day; DD.MM.YYYY counts as expired", () => {
  const { accounts } = users(
    "[account]\nuser = a\nexpdate = 2026/6/1\n[account]\nuser = b\nexpdate = 2026-05-31\n[account]\nuser = c\nexpdate = 31.12.2099\n[account]\nuser = d\nexpdate =\n",
  );
  assert.equal(
    accounts.map((a) => a.expdate),
    ["2026-06-01", "2026-05-31", null, null],
  );
  assert.equal(
    accounts.map((a) => isExpired(a, "2026-06-01")),
    [false, true, true, false],
  );
});

test("group '1 # vip' is an invalid entry, dropped with a warning; '#' inside a value is not a comment", () => {
  const { accounts, warnings } = users("[account]\nuser = a\ngroup = 1 # vip, 2\ndescription = room # 2\n");
  assert.equal(accounts[0]!.group, [2]);
  assert.is(accounts[0]!.description, "room # 2");
  assert.ok(warnings.some((w) => /group entry "1 # vip"/.test(w.message)));
});

test("ident keeps at most 32 provider ids per CAID, and says so", () => {
  const ids = Array.from({ length: 40 }, (_, i) => i.toString(16).padStart(6, "0")).join(",");
  const { accounts, warnings } = users(`[account]\nuser = a\nident = 0500:${ids};0100:00006A\n`);
  assert.is(accounts[0]!.ident["0500"]!.length, 32);
  assert.equal(accounts[0]!.ident["0100"], ["00006A"]);
  assert.ok(warnings.some((w) => /lists 40 ids for CAID 0500; OScam keeps the first 32/.test(w.message)));
});

test("a BOM before the first [account] makes OScam drop that account's keys; the agent says so and keeps the BOM", () => {
  const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from("[account]\nuser = a\n[account]\nuser = b\n")]);
  const doc = parseOscamFile(bytes, "oscam.user");
  assert.ok(printOscamFile(doc).equals(bytes));
  const view = readUserFile(doc);
  assert.equal(
    view.accounts.map((a) => a.user),
    ["b"],
  );
  assert.ok(view.warnings.some((w) => /byte order mark/.test(w.message)));
});

test("keys before the first header and non-account sections are ignored, with warnings", () => {
  const view = users("user = ghost\n[foo]\nuser = x\n[account]\nuser = real\n");
  assert.equal(
    view.accounts.map((a) => a.user),
    ["real"],
  );
  assert.ok(view.warnings.some((w) => /before the first \[account\] header/.test(w.message)));
  assert.ok(view.warnings.some((w) => /\[foo\] is not an \[account\] section/.test(w.message)));
});

test("oscam.conf: mis-cased sections are ignored with their keys; keys before any header are [global]; 6 s clienttimeout", () => {
  const view = conf("nice = 3\nclienttimeout = 6\n[Webif]\nhttpport = 9999\n[webif]\nhttpport = +8443\nhttppwd = s3cret\n");
  assert.is(view.global.nice, 3);
  assert.is(view.global.clienttimeoutMs, 6000);
  assert.equal([view.webif.port, view.webif.ssl, view.webif.passwordSet], [8443, true, true]);
  assert.ok(view.warnings.some((w) => /\[Webif\]: section names are case-sensitive/.test(w.message)));
  assert.not.ok(JSON.stringify(view).includes("s3cret"));
});

test("oscam.conf: newcamd ports lose their DES keys; a TAB before '=' and 'key =<TAB>value' read as OScam reads them", () => {
  const view = conf("[newcamd]\nport = 10000@0963:000000;10001{0102030405060708091011121314}@0500:030B00,042800\nkey\t= 0102\n[webif]\nhttpuser =\tadmin\n");
  assert.equal(view.ports.newcamd, [
    { port: 10000, caid: "0963", provids: ["000000"] },
    { port: 10001, caid: "0500", provids: ["030B00", "042800"], perPortDesKey: true },
  ]);
  assert.is(view.webif.user, "\tadmin", "the value keeps its leading TAB");
  assert.not.ok(JSON.stringify(view).includes("0102030405060708091011121314"));
  assert.is(view.settings.newcamd?.key, undefined);
});

test("oscam.server: label spaces become _, an invalid protocol (CCcam) or a missing label drops the reader", () => {
  const summary = summariseServerFile(
    Buffer.from(
      "[reader]\nlabel = my card\nprotocol = pcsc\n[READER]\nlabel = x\nprotocol = CCcam\n[reader]\nprotocol = cccam\n[reader]\nlabel = off\nprotocol = newcamd\nenable = 0\npassword = hunter2\n",
    ),
  );
  assert.is(summary.readerSections, 4);
  assert.equal(summary.readers, [
    { label: "my_card", protocol: "pcsc", enabled: true, network: false },
    { label: "off", protocol: "newcamd", enabled: false, network: true },
  ]);
});

test.run();
