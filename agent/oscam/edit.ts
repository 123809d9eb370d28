import { classifiedLine, dominantEol, latin1Of, sectionsOf, type OscamDocument, type OscamLine, type SectionSpan } from "./document.js";
import { entryText, lastEntryStyle, prevailingStyle } from "./entry-style.js";

/**
 * Minimal edits of a document: each changes only the lines it must and keeps the file's own style
 * (key padding, spacing after `=`, line endings). Edits return a new document; the input is not
 * changed. Values are UTF-8 text.
 */

export class OscamEditError extends Error {
  override name = "OscamEditError";
}

const keyPattern = /^[A-Za-z0-9_]{1,64}$/;

/** Refuses a key OScam cannot read, or a value that would break the file or that OScam would trim. */
export function checkKeyValue(key: string, value?: string): void {
  if (!keyPattern.test(key)) throw new OscamEditError(`"${key}" is not a key OScam can read (letters, digits and _)`);
  if (value !== undefined && /[\r\n\0]/.test(value)) throw new OscamEditError(`the value of ${key} may not contain a line break or a NUL byte`);
  if (value !== undefined && value !== value.trim()) throw new OscamEditError(`the value of ${key} may not start or end with whitespace (OScam would trim it)`);
}

const line = (raw: string, eol: OscamLine["eol"]): OscamLine => classifiedLine(raw, eol);

function spanOf(doc: OscamDocument, header: number): SectionSpan {
  const span = sectionsOf(doc).find((s) => s.header === header);
  if (!span) throw new OscamEditError(`line ${header + 1} is not a section header`);
  return span;
}

/** The lines with a trailing line ending, so that something can follow the last one. */
function terminated(doc: OscamDocument, eol: "\n" | "\r\n"): OscamLine[] {
  const lines = [...doc.lines];
  const last = lines.at(-1);
  if (last && last.eol === "") lines[lines.length - 1] = { ...last, eol };
  return lines;
}

/**
 * Sets `key` in the section whose header is line `header` (-1: before any header). The last line
 * of that key (the one OScam uses) gets the new value, keeping everything up to the value as
 * written; a missing key is added after the section's last entry, in the section's style.
 */
export function setKey(doc: OscamDocument, header: number, key: string, value: string): OscamDocument {
  checkKeyValue(key, value);
  const lower = key.toLowerCase();
  const span = spanOf(doc, header);
  let target = -1;
  let lastEntry = -1;
  for (let i = span.start; i < span.end; i++) {
    if (doc.lines[i]!.kind !== "entry") continue;
    lastEntry = i;
    if (doc.lines[i]!.key === lower) target = i;
  }
  const lines = [...doc.lines];
  if (target >= 0) {
    const old = lines[target]!;
    const eq = old.raw.indexOf("=");
    const spacing = /^[ \t]*/.exec(old.raw.slice(eq + 1))![0];
    lines[target] = line(old.raw.slice(0, eq + 1) + (spacing || (value ? " " : "")) + latin1Of(value), old.eol);
    return { ...doc, lines };
  }
  const eol = dominantEol(doc);
  const at = lastEntry >= 0 ? lastEntry + 1 : header + 1;
  const endsWithoutNewline = doc.lines.at(-1)?.eol === "";
  if (at > 0 && lines[at - 1]!.eol === "") lines[at - 1] = { ...lines[at - 1]!, eol };
  // Added as the new last line of a file without a final newline, it keeps that property.
  lines.splice(
    at,
    0,
    line(
      entryText(lastEntryStyle(doc.lines, span.start, span.end) ?? prevailingStyle(doc.lines), lower, value),
      at === doc.lines.length && endsWithoutNewline ? "" : eol,
    ),
  );
  return { ...doc, lines };
}

/** Removes every line of `key` in the section (all of them: an earlier duplicate would otherwise take effect). */
export function unsetKey(doc: OscamDocument, header: number, key: string): OscamDocument {
  checkKeyValue(key);
  const span = spanOf(doc, header);
  const lower = key.toLowerCase();
  const lines = doc.lines.filter((l, i) => !(i >= span.start && i < span.end && l.kind === "entry" && l.key === lower));
  return { ...doc, lines };
}

/** Appends a section `[name]` with its entries at the end, after a blank line. */
export function appendSection(doc: OscamDocument, name: string, entries: ReadonlyArray<readonly [string, string]>): OscamDocument {
  if (!/^[A-Za-z0-9_]{1,32}$/.test(name)) throw new OscamEditError(`"${name}" is not a section name`);
  for (const [k, v] of entries) checkKeyValue(k, v);
  const eol = dominantEol(doc);
  const lines = terminated(doc, eol);
  if (lines.length > 0 && lines.at(-1)!.kind !== "blank") lines.push(line("", eol));
  lines.push(line(`[${name}]`, eol));
  const style = prevailingStyle(doc.lines);
  for (const [k, v] of entries) lines.push(line(entryText(style, k.toLowerCase(), v), eol));
  return { ...doc, lines };
}

/** Removes the section whose header is line `header`, with its lines, keeping one blank line between neighbours. */
export function removeSection(doc: OscamDocument, header: number): OscamDocument {
  const span = spanOf(doc, header);
  if (header < 0) throw new OscamEditError("the lines before the first header are not a section");
  let end = span.end;
  const blankBefore = header > 0 && doc.lines[header - 1]!.kind === "blank";
  // Keep the blank lines that separate this section from the next unless one already precedes it.
  if (!blankBefore) while (end > span.start && doc.lines[end - 1]!.kind === "blank") end--;
  const lines = [...doc.lines.slice(0, header), ...doc.lines.slice(end)];
  if (blankBefore && end === doc.lines.length) {
    // Removing the last section: no trailing blank line left behind it.
    while (lines.length > 0 && lines.at(-1)!.kind === "blank") lines.pop();
    if (lines.length > 0 && doc.lines.at(-1)!.eol !== "") lines[lines.length - 1] = { ...lines.at(-1)!, eol: lines.at(-1)!.eol || dominantEol(doc) };
  }
  return { ...doc, lines };
}
