/** Value readers with OScam's semantics (OSCAM.md §1, §3). */

/** A line OScam ignores or reads in a surprising way: for the console to warn about. */
export interface LineWarning {
  /** 1-based line number. */
  line: number;
  message: string;
}

/** C's atoi: optional spaces, an optional sign, digits; anything else reads as 0 (`disabled = yes` → 0). */
export function atoi(text: string): number {
  const m = /^[ \t]*([+-]?\d+)/.exec(text);
  return m ? Number.parseInt(m[1]!, 10) : 0;
}

/** Splits a list and trims its items; empty items are dropped. */
export function listOf(text: string, separator: string): string[] {
  return text
    .split(separator)
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

/**
 * `expdate`: `YYYY-MM-DD` or `YYYY/MM/DD`, single-digit month or day allowed (read with atoi).
 * Empty means never. Anything else (e.g. `31.12.2025`, which OScam reads as the year 31) counts
 * as expired: `valid` is false.
 */
export function expdateOf(text: string): { date: string | null; valid: boolean } {
  if (text.trim() === "") return { date: null, valid: true };
  const parts = text.split(/[-/]/);
  const [year, month, day] = [atoi(parts[0] ?? ""), atoi(parts[1] ?? ""), atoi(parts[2] ?? "")];
  if (parts.length !== 3 || year < 1970 || month < 1 || month > 12 || day < 1 || day > 31) return { date: null, valid: false };
  const pad = (n: number, w: number) => String(n).padStart(w, "0");
  return { date: `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}`, valid: true };
}
