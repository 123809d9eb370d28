/** Value readers with OScam's semantics (OSCAM.md §1, §3). */

/** A line OScam ignores or reads in a surprising way: for the console to warn about. */
export interface LineWarning {
  /** 1-based line number. */
  line: number;
  message: string;
}

/** C's atoi: optional spaces, an optional sign, digits; anything else reads as 0 (`disabled = yes` → 0). */
export function atoi(text: string): number {
  let i = 0;
  while (text.charCodeAt(i) === 0x20 || text.charCodeAt(i) === 0x09) i++;
  let sign = 1;
  const signCode = text.charCodeAt(i);
  if (signCode === 0x2b /* + */ || signCode === 0x2d /* - */) {
    if (signCode === 0x2d) sign = -1;
    i++;
  }
  let n = 0;
  let digits = 0;
  for (let code = text.charCodeAt(i); code >= 0x30 && code <= 0x39; code = text.charCodeAt(++i), digits++) n = n * 10 + (code - 0x30);
  return digits === 0 ? 0 : sign * n;
}

/** Splits a list and trims its items; empty items are dropped. */
export function listOf(text: string, separator: string): string[] {
  const items: string[] = [];
  if (text === "") return items;
  for (const part of text.split(separator)) {
    const item = part.trim();
    if (item !== "") items.push(item);
  }
  return items;
}

/**
 * `expdate`: `YYYY-MM-DD` or `YYYY/MM/DD`, single-digit month or day allowed (read with atoi).
 * Empty means never. Anything else (e.g. `31.12.2025`, which OScam reads as the year 31) counts
 * as expired: `valid` is false.
 */
export function expdateOf(text: string): { date: string | null; valid: boolean } {
  if (text.trim() === "") return { date: null, valid: true };
  const parts = text.split(dateSeparator);
  if (parts.length !== 3) return { date: null, valid: false };
  const [year, month, day] = [atoi(parts[0]!), atoi(parts[1]!), atoi(parts[2]!)];
  if (year < 1970 || month < 1 || month > 12 || day < 1 || day > 31) return { date: null, valid: false };
  return { date: `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}`, valid: true };
}

const dateSeparator = /[-/]/;
const pad = (n: number, width: number) => String(n).padStart(width, "0");
