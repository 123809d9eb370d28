import { suite } from "uvu";
import * as assert from "uvu/assert";
import { applyEdits, caidProblem, checkEdits, dateProblem, identProblem, keyProblem, updateChange } from "../../services/agents/account-plans.js";

const test = suite("change set planning: edits as OScam reads them, refused before anything is sent");

test("extending an expiry runs from the later of the expiry and today; a never-expiring account stays so", () => {
  const today = "2026-12-03";
  assert.is(applyEdits({ expdate: "2027-01-10" }, [{ kind: "extendExpiryDays", days: 30 }], today).entries.expdate, "2027-02-09");
  assert.is(applyEdits({ expdate: "2026-01-01" }, [{ kind: "extendExpiryDays", days: 30 }], today).entries.expdate, "2027-01-02");
  assert.is(applyEdits({ expdate: "31.12.2025" }, [{ kind: "extendExpiryDays", days: 1 }], today).entries.expdate, "2026-12-04");
  assert.equal(applyEdits({}, [{ kind: "extendExpiryDays", days: 30 }], today).entries, {});
});

test("edits become one minimal update: only changed keys are set, removed ones unset", () => {
  const before = { group: "1,2", caid: "0963", description: "box" };
  const { entries, password } = applyEdits(
    before,
    [{ kind: "disable" }, { kind: "renameGroup", from: 2, to: 5 }, { kind: "setCaid", caid: "" }, { kind: "setPassword", password: "n3w" }],
    "2026-12-03",
  );
  assert.equal(updateChange("bedroom", before, entries, password), {
    operation: "ACCOUNT_OPERATION_UPDATE",
    user: "bedroom",
    set: [
      { key: "group", value: "1,5" },
      { key: "disabled", value: "1" },
      { key: "pwd", value: "n3w" },
    ],
    unset: ["caid"],
  });
  assert.is(updateChange("bedroom", before, applyEdits(before, [{ kind: "enable" }], "2026-12-03").entries), undefined, "nothing to do");
});

test("dates, CAIDs, idents and keys OScam would not read are refused with the reason", () => {
  assert.is(dateProblem("2027-01-31"), undefined);
  assert.match(dateProblem("2027-02-30")!, /not a day of the calendar/);
  assert.match(dateProblem("31.12.2027")!, /YYYY-MM-DD/);
  assert.match(dateProblem("1969-12-31")!, /before 1970/);
  assert.is(caidProblem("0963,098C,1833&FFDF:1702,09"), undefined);
  assert.match(caidProblem("0963,,098C")!, /empty entry/);
  assert.match(caidProblem("09G3")!, /not CAID/);
  assert.is(identProblem("0500:030B00,042800;0100:00006A"), undefined);
  assert.match(identProblem("0500")!, /not CAID:provid/);
  assert.match(identProblem(`0500:${Array.from({ length: 33 }, (_, i) => i.toString(16)).join(",")}`)!, /33 provids; OScam keeps only 32/);
  assert.match(keyProblem("user")!, /not changed by an edit/);
  assert.match(keyProblem("pwd")!, /set_password/);
  assert.match(keyProblem("colour")!, /not a key OScam reads/);
  assert.is(keyProblem("cacheex_maxhop"), undefined);
  assert.equal(
    checkEdits([{ kind: "delete" }, { kind: "disable" }]).map((p) => p.message),
    ["delete cannot be combined with other edits"],
  );
  assert.equal(
    checkEdits([{ kind: "keys", set: [{ key: "group", value: "0" }], unset: [] }]).map((p) => p.field),
    ["keys.group"],
  );
});

test.run();
