/**
 * A lossless model of OScam's INI-like files (oscam.conf, oscam.user): every byte of the file is
 * kept — comments, blank lines, spacing, key order and spelling, CRLF or LF per line, a UTF-8 BOM,
 * duplicate keys, unknown sections — so parse → print is byte-identical, and each line says how
 * OScam itself reads it (OSCAM.md §1). Text is held as latin1 strings: one char per byte, so any
 * byte sequence survives; `utf8Of` turns a value into the text a person reads.
 */

/** OScam reads lines with fgets(16384): a longer line is read in pieces (views warn about it). */
export const oscamLineBytes = 16383;
/** Longer than this, a line is not configuration (e.g. 10 MB of one line): a parse error. */
export const maxLineBytes = 1 << 20;

/** How OScam treats one line. */
export type LineKind =
  /** Shorter than 3 characters after trimming: skipped. */
  | "blank"
  /** First character `#` (after OScam's trim): skipped. */
  | "comment"
  /** `[name]`: starts a section. */
  | "section"
  /** `key = value`. */
  | "entry"
  /** Not a comment, yet OScam ignores it; `ignored` says why. */
  | "ignored";

export type IgnoredReason = "tab_indented" | "no_equals_sign";

export interface OscamLine {
  /** The line's bytes (latin1), without its end of line. */
  raw: string;
  /** The line ending as found: LF, CRLF, or none on a last line without one. */
  eol: "\n" | "\r\n" | "";
  kind: LineKind;
  /** For `section`: the name between the brackets, as written. */
  section?: string;
  /** For `entry`: the key as OScam compares it (lower-cased, trimmed). */
  key?: string;
  /** For `entry`: the value as OScam stores it (trimmed by OScam's rules), latin1. */
  value?: string;
  ignored?: IgnoredReason;
}

export interface OscamDocument {
  /** The file started with a UTF-8 byte order mark (kept on print; OScam does not skip it). */
  bom: boolean;
  lines: OscamLine[];
}

/** A file that is not an OScam file: says where and why. */
export class OscamParseError extends Error {
  override name = "OscamParseError";
  constructor(
    readonly file: string,
    readonly line: number,
    readonly reason: string,
  ) {
    super(`${file}, line ${line}: ${reason}`);
  }
}

const bomLatin1 = "\u00ef\u00bb\u00bf";

/**
 * OScam's trim(): trailing spaces, TABs, CR and LF go; leading whitespace goes only when the
 * first character is a space (a leading TAB stays — the quirk that makes TAB-indented lines
 * unknown keys).
 */
export function oscamTrim(text: string): string {
  let end = text.length;
  while (end > 0 && isTrimmed(text.charCodeAt(end - 1))) end--;
  let start = 0;
  if (text.charCodeAt(0) === 0x20) while (start < end && isTrimmed(text.charCodeAt(start))) start++;
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

/** Space, TAB, CR or LF. */
const isTrimmed = (code: number) => code === 0x20 || code === 0x09 || code === 0x0d || code === 0x0a;

/** A line with its classification, built as one object (the parser makes one per line of the file). */
export function classifiedLine(raw: string, eol: OscamLine["eol"]): OscamLine {
  const trimmed = oscamTrim(raw);
  if (trimmed.length < 3) return { raw, eol, kind: "blank" };
  const first = trimmed.charCodeAt(0);
  if (first === 0x23 /* # */) return { raw, eol, kind: "comment" };
  if (first === 0x5b /* [ */ && trimmed.charCodeAt(trimmed.length - 1) === 0x5d /* ] */) return { raw, eol, kind: "section", section: trimmed.slice(1, -1) };
  const eq = trimmed.indexOf("=");
  if (eq < 0) return { raw, eol, kind: "ignored", ignored: first === 0x09 ? "tab_indented" : "no_equals_sign" };
  const key = oscamTrim(trimmed.slice(0, eq)).toLowerCase();
  // "\tkey" is what OScam compares for a TAB-indented line: no key matches it.
  if (key.charCodeAt(0) === 0x09) return { raw, eol, kind: "ignored", ignored: "tab_indented" };
  return { raw, eol, kind: "entry", key, value: oscamTrim(trimmed.slice(eq + 1)) };
}

/**
 * Parses a file's bytes. Refuses what is not an OScam file — NUL bytes (binary), a line longer
 * than OScam reads, an unclosed `[section` — with the line number; never hangs (one linear pass).
 */
export function parseOscamFile(bytes: Uint8Array, file: string): OscamDocument {
  const { bom, lines } = scanOscamFile(bytes, file);
  return { bom, lines: Array.from(lines) };
}

/** A file read line by line, for readers that need no document (a line is kept only while it is read). */
export interface OscamLineSource {
  bom: boolean;
  lines: Iterable<OscamLine>;
}

/**
 * The lines of a file as `parseOscamFile` reads them, one at a time: what a view of a large file
 * (10,000 accounts) reads without keeping every line alive. The errors come while iterating.
 */
export function scanOscamFile(bytes: Uint8Array, file: string): OscamLineSource {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
  const bom = text.startsWith(bomLatin1);
  return { bom, lines: linesOf(bom ? text.slice(bomLatin1.length) : text, file) };
}

function* linesOf(text: string, file: string): Generator<OscamLine> {
  // One scan for a NUL byte over the whole text; the loop only asks whether it lies on the current line.
  const nul = text.indexOf("\0");
  let start = 0;
  let number = 0;
  while (start < text.length) {
    number++;
    const newline = text.indexOf("\n", start);
    const end = newline < 0 ? text.length : newline;
    if (end - start > maxLineBytes) throw new OscamParseError(file, number, `the line is ${end - start} bytes long: this is not an OScam configuration file`);
    if (nul >= start && nul < end) throw new OscamParseError(file, number, "the line contains a NUL byte: this is a binary file, not an OScam configuration");
    const crlf = newline > start && text.charCodeAt(newline - 1) === 0x0d;
    const line = classifiedLine(text.slice(start, crlf ? end - 1 : end), newline < 0 ? "" : crlf ? "\r\n" : "\n");
    if (line.kind === "ignored" && oscamTrim(line.raw).startsWith("[")) {
      throw new OscamParseError(file, number, `the section header ${JSON.stringify(utf8Of(oscamTrim(line.raw)).slice(0, 40))} is not closed with ]`);
    }
    yield line;
    start = end + 1;
  }
}

/** The document's bytes: identical to the parsed file unless it was edited. */
export function printOscamFile(doc: OscamDocument): Buffer {
  let text = doc.bom ? bomLatin1 : "";
  for (const line of doc.lines) text += line.raw + line.eol;
  return Buffer.from(text, "latin1");
}

const nonAscii = /[\x80-\xff]/;
/** A latin1 value as the UTF-8 text it encodes (invalid sequences become U+FFFD); ASCII as is. */
export const utf8Of = (latin1: string) => (nonAscii.test(latin1) ? Buffer.from(latin1, "latin1").toString("utf8") : latin1);
/** UTF-8 text as the latin1 string that holds its bytes. */
export const latin1Of = (text: string) => Buffer.from(text, "utf8").toString("latin1");

/** The line ending most lines of the document use (LF for a document without any). */
export function dominantEol(doc: OscamDocument): "\n" | "\r\n" {
  let crlf = 0;
  let lf = 0;
  for (const line of doc.lines) {
    if (line.eol === "\r\n") crlf++;
    else if (line.eol === "\n") lf++;
  }
  return crlf > lf ? "\r\n" : "\n";
}

/** One section of a document: its header line (-1 for the lines before the first header) and its lines. */
export interface SectionSpan {
  /** Index of the header line, or -1 for the part before any header. */
  header: number;
  name: string | undefined;
  /** Index of the first line after the header. */
  start: number;
  /** Index one past the section's last line. */
  end: number;
}

/** The sections in file order; the part before the first header comes first (it may be empty). */
export function sectionsOf(doc: OscamDocument): SectionSpan[] {
  const spans: SectionSpan[] = [{ header: -1, name: undefined, start: 0, end: doc.lines.length }];
  doc.lines.forEach((line, i) => {
    if (line.kind !== "section") return;
    spans[spans.length - 1]!.end = i;
    spans.push({ header: i, name: line.section, start: i + 1, end: doc.lines.length });
  });
  return spans;
}
