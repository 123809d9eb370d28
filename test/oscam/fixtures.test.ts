import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { readConfFile, webifPassword } from "../../agent/oscam/conf-file.js";
import { parseOscamFile, printOscamFile } from "../../agent/oscam/document.js";
import { summariseServerFile } from "../../agent/oscam/server-file.js";
import { isExpired, readUserFile } from "../../agent/oscam/user-file.js";

/** The team's OScam fixtures (a copy of ../shared/fixtures/oscam, so a clone is self-contained) and what OScam would read from them. */
const fixtures = resolve(import.meta.dirname, "../fixtures/oscam");
const expected = JSON.parse(readFileSync(join(fixtures, "EXPECTED.json"), "utf8"));
const today: string = expected.reference_date;
const instances = ["main", "backup", "messy"] as const;
const read = (instance: string, file: string) => readFileSync(join(fixtures, instance, file));
const user = (instance: string) => readUserFile(parseOscamFile(read(instance, "oscam.user"), "oscam.user"));
const conf = (instance: string) => readConfFile(parseOscamFile(read(instance, "oscam.conf"), "oscam.conf"));

const test = suite("the OScam file model against the shared fixtures and EXPECTED.json");

for (const instance of instances) {
  test(`${instance}: oscam.conf and oscam.user print back byte for byte`, () => {
    for (const file of ["oscam.conf", "oscam.user"]) {
      const bytes = read(instance, file);
      const doc = parseOscamFile(bytes, file);
      assert.ok(printOscamFile(doc).equals(bytes), `${instance}/${file}`);
      const endings = new Set(doc.lines.filter((l) => l.eol).map((l) => l.eol));
      assert.equal([...endings], [expected.instances[instance].line_endings === "CRLF" ? "\r\n" : "\n"], `${instance}/${file} line endings`);
    }
  });

  test(`${instance}: accounts as OScam loads them (totals, disabled, expired on ${today})`, () => {
    const want = expected.instances[instance].accounts;
    const { accounts } = user(instance);
    assert.is(accounts.length, want.total);
    assert.equal(
      accounts.filter((a) => a.disabled).map((a) => a.user),
      want.disabled_names,
    );
    assert.equal(
      accounts.filter((a) => isExpired(a, today)).map((a) => a.user),
      want.expired_names,
    );
    assert.is(accounts.filter((a) => !a.disabled && !isExpired(a, today)).length, want.active);
    if (want.usernames)
      assert.equal(
        accounts.map((a) => a.user),
        want.usernames,
      );
    for (const name of want.commented_out_not_counted ?? [])
      assert.not.ok(
        accounts.some((a) => a.user === name),
        `${name} is commented out`,
      );
  });

  test(`${instance}: readers counted from oscam.server without reading any other value`, () => {
    const want = expected.instances[instance].readers;
    const summary = summariseServerFile(read(instance, "oscam.server"));
    assert.is(summary.readers.length, want.total);
    assert.equal(
      summary.readers.map((r) => r.label),
      want.labels,
    );
    assert.is(summary.readers.filter((r) => r.enabled).length, want.enabled);
    assert.is(summary.readers.filter((r) => r.network).length, want.network);
    assert.is(summary.readers.filter((r) => !r.network).length, want.local);
    if (want.reader_sections) assert.is(summary.readerSections, want.reader_sections);
    for (const [label, protocol] of Object.entries(want.protocols ?? {})) assert.is(summary.readers.find((r) => r.label === label)?.protocol, protocol);
    // Endpoints (EXPECTED.json lists them) are deliberately not read: only label, protocol, enable leave oscam.server.
    assert.equal(Object.keys(summary.readers[0]!).sort(), ["enabled", "label", "network", "protocol"]);
  });

  test(`${instance}: oscam.conf — WebIF, ports without DES keys, global settings`, () => {
    const want = expected.instances[instance];
    const view = conf(instance);
    assert.is(view.webif.enabled, want.webif.enabled);
    assert.is(view.webif.port, want.webif.port);
    assert.is(view.webif.ssl, want.webif.ssl);
    assert.is(view.webif.user, want.webif.user);
    assert.is(view.webif.passwordSet, want.webif.password_set);
    assert.is(view.webif.allowed, want.webif.allowed);
    if (want.webif.refresh !== undefined) assert.is(view.webif.refresh, want.webif.refresh);
    if (want.webif.readonly !== undefined) assert.is(view.webif.readonly, want.webif.readonly);
    for (const entry of want.ports.newcamd ?? []) {
      const port = view.ports.newcamd?.find((p) => p.port === entry.port);
      assert.ok(port, `newcamd port ${entry.port}`);
      assert.is(port!.caid, entry.caid);
      assert.equal(port!.provids, entry.provids);
      if (entry.per_port_deskey !== undefined) assert.is(Boolean(port!.perPortDesKey), entry.per_port_deskey);
    }
    assert.is(view.ports.newcamd?.length ?? 0, (want.ports.newcamd ?? []).length, "the last newcamd port key wins");
    for (const entry of want.ports.cs378x ?? []) {
      const port = view.ports.cs378x?.find((p) => p.port === entry.port);
      assert.ok(port, `cs378x port ${entry.port}`);
      assert.is(port!.caid, entry.caid);
    }
    if (want.ports.cccam)
      assert.equal(
        view.ports.cccam?.map((p) => p.port),
        want.ports.cccam,
      );
    if (want.ports.camd33)
      assert.equal(
        view.ports.camd33?.map((p) => p.port),
        [want.ports.camd33],
      );
    if (want.ports.monitor_udp)
      assert.equal(
        view.ports.monitor?.map((p) => p.port),
        [want.ports.monitor_udp],
      );
    const g = want.global;
    assert.is(view.global.logfile.split(";")[0], g.logfile);
    if ("pidfile" in g) assert.is(view.global.pidfile, g.pidfile);
    if ("nice" in g) assert.is(view.global.nice, g.nice);
    if ("clienttimeout_ms" in g) assert.is(view.global.clienttimeoutMs, g.clienttimeout_ms);
    if ("maxlogsize_kb" in g) assert.is(view.global.maxlogsizeKb, g.maxlogsize_kb);
    if ("usrfile_is_user_LOG_not_account_file" in g) assert.is(view.global.usrfile, g.usrfile_is_user_LOG_not_account_file);
    if ("reload_useraccounts" in g) assert.is(view.global.reloadUseraccounts, g.reload_useraccounts === 1);
  });

  test(`${instance}: no secret of oscam.conf is in its view`, () => {
    const view = JSON.stringify(conf(instance));
    assert.not.ok(view.includes(webifPassword(parseOscamFile(read(instance, "oscam.conf"), "oscam.conf"))), "httppwd");
    const text = read(instance, "oscam.conf").toString("utf8");
    for (const m of text.matchAll(/^\s*key\s*=\s*(\S+)/gm)) assert.not.ok(view.includes(m[1]!), "a DES key");
    for (const m of text.matchAll(/\{([0-9A-Fa-f]+)\}/g)) assert.not.ok(view.includes(m[1]!), "a per-port DES key");
  });
}

test("main: account samples read as OScam reads them", () => {
  const samples = expected.instances.main.accounts.samples;
  const byName = new Map(user("main").accounts.map((a) => [a.user, a]));
  const lr = byName.get("livingroom")!;
  assert.equal(lr.group, samples.livingroom.group);
  assert.equal(lr.caid, samples.livingroom.caid);
  assert.equal(lr.ident, samples.livingroom.ident);
  assert.is(lr.au, samples.livingroom.au);
  assert.is(lr.uniq, samples.livingroom.uniq);
  assert.is(lr.description, samples.livingroom.description);
  assert.equal(byName.get("tobias")!.ident, samples.tobias.ident);
  assert.equal(byName.get("tobias")!.allowedprotocols, samples.tobias.allowedprotocols);
  assert.is(byName.get("tobias")!.raw.cccmaxhops, String(samples.tobias.cccmaxhops));
  assert.is(byName.get("mum_dm920")!.expdate, samples.mum_dm920.expdate);
  assert.is(byName.get("mum_dm920")!.raw.expdate, samples.mum_dm920.expdate_raw);
  assert.equal(
    byName.get("max_wb")!.betatunnel,
    samples.max_wb.betatunnel.map((b: { from_caid: string; srvid: string; to_caid: string }) => ({ fromCaid: b.from_caid, srvid: b.srvid, toCaid: b.to_caid })),
  );
});

test("messy: duplicate keys, '#' in values, unknown keys, a TAB-indented line, and the warnings that say so", () => {
  const samples = expected.instances.messy.accounts.samples;
  const view = user("messy");
  const byName = new Map(view.accounts.map((a) => [a.user, a]));
  assert.equal(byName.get("carol")!.group, samples.carol.group);
  assert.is(byName.get("carol")!.description, samples.carol.description);
  assert.equal(byName.get("carol")!.caid, samples.carol.caid);
  assert.equal(Object.keys(byName.get("dave")!.unknown), samples.dave.unknown_keys);
  assert.is(byName.get("frank")!.description, "", "the TAB-indented description is ignored, as OScam does");
  assert.is(byName.get("frank")!.expdate, samples.frank.expdate);
  assert.equal(byName.get("gina")!.ident, samples.gina.ident);
  assert.is(byName.get("gina")!.expdate, samples.gina.expdate);
  assert.ok(view.warnings.some((w) => /starts with a TAB: OScam ignores it/.test(w.message)));
  assert.ok(view.warnings.some((w) => /unknown key "vip"/.test(w.message)));
  const c = conf("messy");
  assert.equal(
    c.sections.filter((s) => s === "cs357x"),
    expected.instances.messy.empty_sections,
  );
  assert.is(c.ports.cs357x, undefined);
});

test.run();
