import { classifiedLine, dominantEol, latin1Of, type OscamDocument, type OscamLine, utf8Of } from "./document.js";
import { checkKeyValue, OscamEditError } from "./edit.js";
import { type EntryStyle, entryText, lastEntryStyle, prevailingStyle } from "./entry-style.js";
import { readUserFile } from "./user-file.js";

/** An account change, as commands carry it (`apply_accounts`). */
export type AccountChange =
  | { op: "add"; user: string; set: Record<string, string>; beforeUser?: string }
  | { op: "update"; user: string; set?: Record<string, string>; unset?: string[] }
  | { op: "disable" | "enable" | "delete"; user: string };

/** Longest user name OScam keeps (`char usr[64]`); a longer one is cut, so it is refused. */
export const maxUserNameBytes = 63;

/**
 * Why OScam would not load `user` as written, or undefined when it would (OSCAM.md §1, §3): at
 * most 63 bytes, no line break or NUL, and no leading or trailing space or TAB (OScam trims them).
 * Inner spaces and any other character, `=`, `#`, `[` and `;` included, are kept as written.
 */
export function userNameProblem(user: string): string | undefined {
  if (user.length === 0) return "the user name is empty";
  if (/[\r\n\0]/.test(user)) return "a user name may not contain a line break or a NUL byte";
  if (/^[ \t]|[ \t]$/.test(user)) return "a user name may not start or end with a space or TAB (OScam trims them)";
  if (Buffer.byteLength(user) > maxUserNameBytes) return `the user name is ${Buffer.byteLength(user)} bytes long; OScam keeps at most ${maxUserNameBytes}`;
  return undefined;
}

/** One `[header]` section (or the lines before the first), edited in place. */
interface Section {
  /** Its lines, the header first (no header for the part before the first one, or what a deletion left). */
  lines: OscamLine[];
  /** Its index in the document's sections (kept up to date when a section is inserted). */
  position: number;
}

/** An account's keys as written (the last value of each, UTF-8), in the order they first appear. */
export type AccountEntries = Record<string, string>;

/** How one change went; `before`/`after` are absent when the account did not exist then. */
export interface ChangeReport {
  status: "applied" | "unchanged" | "failed";
  /** Why it failed (failed only). */
  reason?: string;
  before?: AccountEntries;
  after?: AccountEntries;
  /** delete: the account that followed the deleted one in the file. */
  followedBy?: string;
}

/**
 * Applies account changes in order; each touches only the lines it must. All-or-nothing: the
 * first change that cannot be made throws OscamEditError and nothing is returned.
 */
export function applyAccountChanges(doc: OscamDocument, changes: readonly AccountChange[]): OscamDocument {
  return editAccounts(doc, changes, { independent: false }).doc;
}

/**
 * Applies account changes in order and reports each with the account's keys before and after.
 * Independent: a change that cannot be made is reported failed and leaves the document as it was
 * (each change is checked whole before any line moves); otherwise it throws OscamEditError. The
 * document is split into sections once and accounts found through an index, so 10,000 changes
 * to a file of 10,000 accounts take one pass over it, not one per change.
 */
export function editAccounts(
  doc: OscamDocument,
  changes: readonly AccountChange[],
  options: { independent: boolean },
): { doc: OscamDocument; reports: ChangeReport[] } {
  const eol = dominantEol(doc);
  const fileStyle = prevailingStyle(doc.lines);
  const sections = splitSections(doc);
  let { index, renamed } = indexAccounts(doc.bom, sections);
  // After a rename, or a deletion in a file where OScam renames duplicates (name_x), loaded names
  // may have moved: the index is rebuilt (one pass) before it is next used.
  let stale = false;
  const current = () => {
    if (stale) ({ index, renamed } = indexAccounts(doc.bom, sections));
    stale = false;
    return index;
  };
  const find = (user: string): Section => {
    const section = current().get(user);
    if (!section) throw new OscamEditError(`there is no account "${user}" in oscam.user`);
    return section;
  };
  const reports: ChangeReport[] = [];

  for (const [i, change] of changes.entries()) {
    try {
      reports.push(applyOne(i, change));
    } catch (err) {
      if (!options.independent || !(err instanceof OscamEditError)) throw err;
      reports.push({ status: "failed", reason: err.message });
    }
  }
  return { doc: { ...doc, lines: joinSections(sections, eol) }, reports };

  function applyOne(i: number, change: AccountChange): ChangeReport {
    const problem = userNameProblem(change.user);
    if (problem) throw new OscamEditError(`change ${i + 1}: ${problem}`);
    switch (change.op) {
      case "add": {
        if (current().has(change.user)) throw new OscamEditError(`an account "${change.user}" exists already`);
        const entries: Array<[string, string]> = [["user", change.user], ...Object.entries(change.set).filter(([k]) => k.toLowerCase() !== "user")];
        for (const [k, v] of entries) checkKeyValue(k, v);
        const lines = entries.map(([k, v]) => classifiedLine(entryText(fileStyle, k.toLowerCase(), v), eol));
        const next = change.beforeUser ? current().get(change.beforeUser) : undefined;
        let section: Section;
        if (next) {
          // Put back where a deleted account was: before the account that followed it, with a
          // blank line after it when the accounts there are separated by one.
          const previous = lastSectionWithLines(sections, next.position)?.lines.at(-1);
          const separated = previous === undefined || previous.kind === "blank";
          section = { lines: [classifiedLine("[account]", eol), ...lines, ...(separated ? [classifiedLine("", eol)] : [])], position: next.position };
          sections.splice(next.position, 0, section);
          for (let p = next.position + 1; p < sections.length; p++) sections[p]!.position = p;
        } else {
          // After a blank line, as the accounts of a file are separated.
          const last = lastSectionWithLines(sections, sections.length);
          if (last && last.lines.at(-1)!.kind !== "blank") last.lines.push(classifiedLine("", eol));
          section = { lines: [classifiedLine("[account]", eol), ...lines], position: sections.length };
          sections.push(section);
        }
        // It loads under its own name: no other account has it (checked above). Placed before
        // another, a later duplicate of it would have been renamed: the index is rebuilt then.
        index.set(change.user, section);
        if (next && renamed) stale = true;
        return { status: "applied", after: entriesOf(section) };
      }
      case "update": {
        const section = find(change.user);
        const set = Object.entries(change.set ?? {});
        // Checked whole before any line moves, so a refused change leaves the account as it was.
        for (const [k, v] of set) {
          checkKeyValue(k, v);
          if (k.toLowerCase() === "user") {
            const renameProblem = userNameProblem(v);
            if (renameProblem) throw new OscamEditError(`change ${i + 1}: ${renameProblem}`);
          }
        }
        for (const k of change.unset ?? []) {
          checkKeyValue(k);
          if (k.toLowerCase() === "user") throw new OscamEditError(`change ${i + 1}: an account cannot be without a user name; delete it instead`);
        }
        const before = entriesOf(section);
        for (const [k, v] of set) {
          if (k.toLowerCase() === "user") stale = true;
          setIn(section, k, v, fileStyle, eol);
        }
        for (const k of change.unset ?? []) unsetIn(section, k);
        return reportOf(before, entriesOf(section));
      }
      case "disable": {
        const section = find(change.user);
        const before = entriesOf(section);
        setIn(section, "disabled", "1", fileStyle, eol);
        return reportOf(before, entriesOf(section));
      }
      case "enable": {
        const section = find(change.user);
        const before = entriesOf(section);
        unsetIn(section, "disabled");
        return reportOf(before, entriesOf(section));
      }
      case "delete": {
        const section = find(change.user);
        const before = entriesOf(section);
        const followedBy = nextAccountUser(sections, section.position);
        deleteSection(sections, section);
        index.delete(change.user);
        if (renamed) stale = true;
        return { status: "applied", before, ...(followedBy === undefined ? {} : { followedBy }) };
      }
    }
  }
}

const reportOf = (before: AccountEntries, after: AccountEntries): ChangeReport => ({
  status: JSON.stringify(before) === JSON.stringify(after) ? "unchanged" : "applied",
  before,
  after,
});

/** A section's keys as written: the last value of each key, UTF-8. */
function entriesOf(section: Section): AccountEntries {
  const entries: AccountEntries = {};
  for (const line of section.lines) {
    if (line.kind !== "entry") continue;
    const key = line.key!;
    if (key === "__proto__" || key === "constructor" || key === "prototype") continue;
    entries[key] = utf8Of(line.value!);
  }
  return entries;
}

/** The user name (as written) of the first account section after `position`. */
function nextAccountUser(sections: readonly Section[], position: number): string | undefined {
  for (let p = position + 1; p < sections.length; p++) {
    const header = sections[p]!.lines[0];
    if (header?.kind !== "section" || header.section!.toLowerCase() !== "account") continue;
    return entriesOf(sections[p]!).user;
  }
  return undefined;
}

function splitSections(doc: OscamDocument): Section[] {
  const sections: Section[] = [{ lines: [], position: 0 }];
  for (const line of doc.lines) {
    if (line.kind === "section") sections.push({ lines: [], position: sections.length });
    sections.at(-1)!.lines.push(line);
  }
  return sections;
}

/**
 * The loaded name of each account → its section, as OScam (and readUserFile) names them, and
 * whether any account loads under another name than it is written with (a duplicate).
 */
function indexAccounts(bom: boolean, sections: readonly Section[]): { index: Map<string, Section>; renamed: boolean } {
  const byHeaderLine = new Map<number, Section>();
  const lines: OscamLine[] = [];
  for (const s of sections) {
    if (s.lines[0]?.kind === "section") byHeaderLine.set(lines.length, s);
    for (const l of s.lines) lines.push(l);
  }
  const index = new Map<string, Section>();
  let renamed = false;
  for (const account of readUserFile({ bom, lines }).accounts) {
    const section = byHeaderLine.get(account.headerLine);
    if (section) index.set(account.user, section);
    if (account.user !== account.userAsWritten) renamed = true;
  }
  return { index, renamed };
}

/**
 * Sets `key`: the last line of it (the one OScam uses) gets the new value, keeping everything up
 * to the value as written; a missing key is added after the section's last entry, in the style of
 * the section's entries (the file's prevailing style when it has none).
 */
function setIn(section: Section, key: string, value: string, fileStyle: EntryStyle, eol: "\n" | "\r\n"): void {
  checkKeyValue(key, value);
  const lower = key.toLowerCase();
  const lines = section.lines;
  let target = -1;
  let lastEntry = -1;
  for (let i = 1; i < lines.length; i++) {
    if (lines[i]!.kind !== "entry") continue;
    lastEntry = i;
    if (lines[i]!.key === lower) target = i;
  }
  if (target >= 0) {
    const old = lines[target]!;
    const eq = old.raw.indexOf("=");
    const spacing = /^[ \t]*/.exec(old.raw.slice(eq + 1))![0];
    lines[target] = classifiedLine(old.raw.slice(0, eq + 1) + (spacing || (value ? " " : "")) + latin1Of(value), old.eol);
    return;
  }
  const at = lastEntry >= 0 ? lastEntry + 1 : 1;
  const style = lastEntryStyle(lines) ?? fileStyle;
  // Only the file's last line can lack a line ending; a line added after it takes that over.
  const previous = lines[at - 1]!;
  const last = at === lines.length && previous.eol === "";
  if (previous.eol === "") lines[at - 1] = { ...previous, eol };
  lines.splice(at, 0, classifiedLine(entryText(style, lower, value), last ? "" : eol));
}

/** Removes every line of `key` in the section (an earlier duplicate would otherwise take effect). */
function unsetIn(section: Section, key: string): void {
  checkKeyValue(key);
  const lower = key.toLowerCase();
  section.lines = section.lines.filter((l, i) => i === 0 || !(l.kind === "entry" && l.key === lower));
}

/**
 * Deletes an account: its header and its lines up to its last entry. Comments and blank lines
 * after its last entry (a commented-out account, a note about the next one) belong to no account
 * and stay; blank lines are kept to one between the neighbours.
 */
function deleteSection(sections: Section[], section: Section): void {
  const lines = section.lines;
  let ownEnd = 1;
  for (let i = 1; i < lines.length; i++) if (lines[i]!.kind === "entry" || lines[i]!.kind === "ignored") ownEnd = i + 1;
  let rest = lines.slice(ownEnd);
  const { position } = section;
  const before = lastSectionWithLines(sections, position)?.lines.at(-1);
  // With a blank line (or nothing) before it, the blank lines after it would double up.
  if (before === undefined || before.kind === "blank") {
    let skip = 0;
    while (skip < rest.length && rest[skip]!.kind === "blank") skip++;
    rest = rest.slice(skip);
  }
  section.lines = rest;
  // The file's last account gone: no blank line left trailing at the end of the file.
  let lastInFile = true;
  for (let p = position; p < sections.length && lastInFile; p++) lastInFile = sections[p]!.lines.length === 0;
  if (lastInFile) {
    for (let p = position - 1; p >= 0; p--) {
      const prior = sections[p]!.lines;
      while (prior.length > 0 && prior.at(-1)!.kind === "blank") prior.pop();
      if (prior.length > 0) break;
    }
  }
}

/** The last section before `position` that has any line (what a new or deleted section follows). */
function lastSectionWithLines(sections: readonly Section[], position: number): Section | undefined {
  for (let p = position - 1; p >= 0; p--) if (sections[p]!.lines.length > 0) return sections[p];
  return undefined;
}

/** The sections' lines in order; a line followed by another gets a line ending if it had none. */
function joinSections(sections: readonly Section[], eol: "\n" | "\r\n"): OscamLine[] {
  const lines: OscamLine[] = [];
  for (const s of sections) for (const l of s.lines) lines.push(l);
  for (let i = 0; i < lines.length - 1; i++) if (lines[i]!.eol === "") lines[i] = { ...lines[i]!, eol };
  return lines;
}
