import fc from "fast-check";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { readConfFile } from "../../agent/oscam/conf-file.js";
import { OscamParseError, parseOscamFile, printOscamFile } from "../../agent/oscam/document.js";
import { applyAccountChanges } from "../../agent/oscam/account-edits.js";
import { summariseServerFile } from "../../agent/oscam/server-file.js";
import { readUserFile } from "../../agent/oscam/user-file.js";
import { fuzzRuns } from "../helpers/fault-mode.js";

const test = suite("the OScam parsers under fuzzing: garbage is a parse error, anything accepted round-trips");

// 6,000 cases in CI; 100,000 with FAULTS_LONG=1 (or FUZZ_RUNS spread over the three properties).
const suiteShort = 6000;
const runs = {
  bytes: fuzzRuns(3000, 50_000, suiteShort),
  oscamLike: fuzzRuns(2000, 35_000, suiteShort),
  edits: fuzzRuns(1000, 15_000, suiteShort),
};

/** Runs a property and prints its figure; `body` answers whether the parser accepted the case. */
function checked<T>(name: string, arbitrary: fc.Arbitrary<T>, numRuns: number, body: (value: T) => boolean) {
  let accepted = 0;
  const started = performance.now();
  fc.assert(
    fc.property(arbitrary, (value) => {
      if (body(value)) accepted++;
    }),
    { numRuns },
  );
  console.log(`fuzz: ${name}: ${numRuns} cases, ${accepted} accepted and round-tripped, 0 crashes (${((performance.now() - started) / 1000).toFixed(1)} s)`);
}

/** Parses; answers the document, or undefined for a parse error. Any other error fails the test. */
function tryParse(bytes: Uint8Array) {
  try {
    return parseOscamFile(bytes, "oscam.user");
  } catch (err) {
    if (err instanceof OscamParseError) return undefined;
    throw err;
  }
}

test("arbitrary bytes: a parse error or a byte-identical round trip, and the views never throw", () => {
  checked("arbitrary bytes", fc.uint8Array({ maxLength: 2000 }), runs.bytes, (bytes) => {
    summariseServerFile(bytes);
    const doc = tryParse(bytes);
    if (!doc) return false;
    assert.ok(printOscamFile(doc).equals(Buffer.from(bytes)));
    readUserFile(doc);
    readConfFile(doc);
    return true;
  });
});

/** Lines that look like OScam files: headers, keys with any spacing and case, comments, TABs, BOMs, CR. */
const space = fc.constantFrom("", " ", "  ", "\t", " \t ");
const key = fc.constantFrom("user", "USER", "pwd", "Pwd", "group", "caid", "ident", "disabled", "expdate", "description", "httpport", "port", "vip");
const value = fc.string({ unit: fc.constantFrom("a", "Z", "0", "9", ",", ":", ";", "#", "=", " ", "-", "/", "ü", "東", "{", "}", "@", "+"), maxLength: 20 });
const oscamLine = fc.oneof(
  fc.tuple(space, key, space, space, value, space).map(([a, k, b, c, v, d]) => `${a}${k}${b}=${c}${v}${d}`),
  fc.constantFrom("[account]", "[Account]", "[ACCOUNT]", "[global]", "[webif]", "[Webif]", "[newcamd]", "[reader]", " [account]", "\t[account]"),
  fc.string({ maxLength: 30 }).map((s) => `#${s.replace(/[\r\n]/g, "")}`),
  fc.constantFrom("", " ", "\t", "ab", "no equals sign here"),
);
const oscamText = fc
  .tuple(fc.boolean(), fc.array(fc.tuple(oscamLine, fc.constantFrom("\n", "\r\n", "\r\n", "\n")), { maxLength: 60 }), fc.boolean())
  .map(([bom, lines, finalNewline]) => {
    const body = lines.map(([l, eol]) => l + eol).join("");
    return Buffer.concat([Buffer.from(bom ? [0xef, 0xbb, 0xbf] : []), Buffer.from(finalNewline ? body : body.replace(/\r?\n$/, ""), "utf8")]);
  });

test("OScam-like files (mixed endings, BOM, odd spacing, UTF-8): always accepted, byte-identical round trip", () => {
  checked("OScam-like files", oscamText, runs.oscamLike, (bytes) => {
    const doc = parseOscamFile(bytes, "oscam.user");
    assert.ok(printOscamFile(doc).equals(bytes));
    readUserFile(doc);
    readConfFile(doc);
    return true;
  });
});

/** A well-formed oscam.user with unique names and random formatting. */
const accountFile = fc
  .uniqueArray(fc.stringMatching(/^[a-z][a-z0-9_-]{0,11}$/), { minLength: 1, maxLength: 12 })
  .chain((names) =>
    fc.tuple(
      fc.constant(names),
      fc.array(fc.tuple(fc.constantFrom(" = ", "=", "   =   ", "                   = "), fc.constantFrom("\n", "\r\n")), {
        minLength: names.length,
        maxLength: names.length,
      }),
    ),
  )
  .map(([names, styles]) =>
    names
      .map((name, i) => {
        const [eq, eol] = styles[i]!;
        return `[account]${eol}user${eq}${name}${eol}pwd${eq}p-${name}${eol}group${eq}1${eol}${eol}`;
      })
      .join(""),
  );

test("property: an edit, re-parsed, shows exactly that edit and nothing else moved", () => {
  checked(
    "one edit moves nothing else",
    fc.tuple(accountFile, fc.nat(), fc.constantFrom("pwd", "group", "description", "expdate", "caid"), fc.stringMatching(/^[A-Za-z0-9,:;.-]{1,16}$/)),
    runs.edits,
    ([source, pick, field, newValue]) => {
      const before = parseOscamFile(Buffer.from(source), "oscam.user");
      const accounts = readUserFile(before).accounts;
      const target = accounts[pick % accounts.length]!;
      const after = applyAccountChanges(before, [{ op: "update", user: target.user, set: { [field]: newValue } }]);
      const reread = readUserFile(parseOscamFile(printOscamFile(after), "oscam.user")).accounts;
      assert.is(reread.length, accounts.length);
      for (const [i, account] of reread.entries()) {
        const expected = account.user === target.user ? { ...accounts[i]!.raw, [field]: newValue } : accounts[i]!.raw;
        assert.equal(account.raw, expected);
      }
      return true;
    },
  );
});

test("not OScam files: binary, 10 MB of one line, an unclosed header — a parse error with the line number", () => {
  const binary = Buffer.from("[account]\nuser = a\n\0\0\x01\x02garbage\n");
  assert.throws(() => parseOscamFile(binary, "oscam.user"), /oscam\.user, line 3: the line contains a NUL byte/);
  const started = process.hrtime.bigint();
  assert.throws(() => parseOscamFile(Buffer.alloc(10 * 1024 * 1024, 0x61), "oscam.conf"), /oscam\.conf, line 1: the line is 10485760 bytes long/);
  assert.ok(process.hrtime.bigint() - started < 5_000_000_000n, "refused in one pass, not a hang");
  assert.throws(
    () => parseOscamFile(Buffer.from("[account]\nuser = a\n[account\npwd = b\n"), "oscam.user"),
    /line 3: the section header "\[account" is not closed with \]/,
  );
});

test.run();
