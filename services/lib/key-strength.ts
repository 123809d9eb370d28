/**
 * Why a 32-byte key is obviously weak, or undefined when it is not: every byte the same (all-zero
 * included), a short pattern repeated (`abab…`, `deadbeef…`), a counting sequence (00 01 02 …), or
 * too few distinct bytes to have come from a random source. A random key fails none of these
 * except with negligible probability.
 */
export function weakKeyReason(key: Uint8Array): string | undefined {
  if (key.every((b) => b === 0)) return "it is all zeros";
  if (key.every((b) => b === key[0])) return "every byte is the same";
  for (let period = 2; period <= key.length / 2; period++) {
    if (key.every((b, i) => b === key[i % period])) return `it repeats a ${period}-byte pattern`;
  }
  const step = (key[1]! - key[0]! + 256) % 256;
  if (key.every((b, i) => i === 0 || (b - key[i - 1]! + 256) % 256 === step)) return "it is a counting sequence";
  if (new Set(key).size < 12) return "it has too few distinct bytes to be random";
  return undefined;
}
