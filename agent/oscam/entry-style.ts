import { latin1Of, type OscamLine } from "./document.js";

/**
 * How a file writes `key = value`, read off its entry lines, so that an added line looks like its
 * neighbours: the separator before `=` (none, one space, spaces padding keys to a column as the
 * WebIF writes them, or TABs to a tab stop) and the spacing after it.
 */
export interface EntryStyle {
  /** Between the key and `=`: "none", one "space", "pad" with spaces to `column`, or "tab" to `column`. */
  separator: "none" | "space" | "pad" | "tab";
  /** The column `=` stands at (for "pad" and "tab"; tab stops every 8 columns). */
  column: number;
  /** What follows `=` before the value: "", " " or "\t". */
  after: string;
}

const plain: EntryStyle = { separator: "space", column: 0, after: " " };
const tabWidth = 8;

/** The visual column after `text` (tabs to the next multiple of 8). */
function columnAfter(text: string): number {
  let column = 0;
  for (let i = 0; i < text.length; i++) column = text.charCodeAt(i) === 0x09 ? (Math.floor(column / tabWidth) + 1) * tabWidth : column + 1;
  return column;
}

/** The style of one `key = value` line. */
export function styleOfEntry(raw: string): EntryStyle {
  const eq = raw.indexOf("=");
  const left = raw.slice(0, eq).replace(/^[ \t]+/, "");
  const key = left.trimEnd();
  const gap = left.slice(key.length);
  const afterGap = /^[ \t]*/.exec(raw.slice(eq + 1))![0];
  const after = afterGap === "" ? "" : afterGap.startsWith("\t") ? "\t" : " ";
  if (gap.includes("\t")) return { separator: "tab", column: columnAfter(left), after };
  if (gap.length > 1) return { separator: "pad", column: left.length, after };
  return { separator: gap.length === 1 ? "space" : "none", column: 0, after };
}

const styleKey = (s: EntryStyle) => `${s.separator}/${s.column}/${s.after}`;

/**
 * The style most entry lines of `lines` use (ties go to the one seen last), or one space either
 * side of `=` when there are none.
 */
export function prevailingStyle(lines: Iterable<OscamLine>): EntryStyle {
  const counts = new Map<string, { style: EntryStyle; count: number }>();
  let best: { style: EntryStyle; count: number } | undefined;
  for (const line of lines) {
    if (line.kind !== "entry") continue;
    const style = styleOfEntry(line.raw);
    const key = styleKey(style);
    const entry = counts.get(key) ?? counts.set(key, { style, count: 0 }).get(key)!;
    entry.count++;
    if (!best || entry.count >= best.count) best = entry;
  }
  return best?.style ?? plain;
}

/** The style of the last entry line among `lines`, if there is one. */
export function lastEntryStyle(lines: readonly OscamLine[], start = 0, end = lines.length): EntryStyle | undefined {
  for (let i = end - 1; i >= start; i--) if (lines[i]!.kind === "entry") return styleOfEntry(lines[i]!.raw);
  return undefined;
}

/** `key = value` written in `style`; `value` is UTF-8 text, the result latin1 like the document. */
export function entryText(style: EntryStyle, key: string, value: string): string {
  let head: string;
  switch (style.separator) {
    case "none":
      head = key;
      break;
    case "space":
      head = `${key} `;
      break;
    case "pad":
      head = key.length < style.column ? key.padEnd(style.column) : `${key} `;
      break;
    case "tab": {
      head = `${key}\t`;
      while (columnAfter(head) < style.column) head += "\t";
      break;
    }
  }
  return `${head}=${style.after}${latin1Of(value)}`;
}
