import { oscamTrim } from "./document.js";
import { atoi } from "./values.js";

/** Protocols OScam accepts for a reader (case-sensitive), local and network (OSCAM.md §4). */
export const localReaderProtocols = new Set([
  "internal",
  "mouse",
  "mp35",
  "pcsc",
  "sc8in1",
  "smargo",
  "smartreader",
  "db2com",
  "stapi",
  "stinger",
  "drecas",
  "serial",
]);
export const networkReaderProtocols = new Set([
  "camd35",
  "cs357x",
  "cs378x",
  "camd33",
  "newcamd",
  "newcamd525",
  "newcamd524",
  "cccam",
  "cccam_ext",
  "cccam_mcs",
  "gbox",
  "radegast",
  "scam",
  "ghttp",
  "constcw",
]);

/** All that is taken from oscam.server: a reader's label, protocol and whether it is enabled. */
export interface ReaderSummary {
  label: string;
  protocol: string;
  enabled: boolean;
  network: boolean;
}

export interface ServerFileSummary {
  /** `[reader]` headers in the file (OScam loads only those with a label and a valid protocol). */
  readerSections: number;
  readers: ReaderSummary[];
}

/**
 * Counts readers in oscam.server. oscam.server is full of secrets (card keys, peer passwords):
 * this reader looks at three keys — `label`, `protocol`, `enable` — and lets every other line go
 * without keeping any part of it. It does not build a document of the file.
 */
export function summariseServerFile(bytes: Uint8Array): ServerFileSummary {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
  let readerSections = 0;
  const readers: ReaderSummary[] = [];
  let current: { label: string; protocol: string; enable: string } | undefined;
  const close = () => {
    if (!current) return;
    const network = networkReaderProtocols.has(current.protocol);
    // A reader without a label or with an unknown protocol is not loaded (its slot is reused).
    if (current.label && (network || localReaderProtocols.has(current.protocol))) {
      readers.push({ label: current.label, protocol: current.protocol, enabled: atoi(current.enable) !== 0, network });
    }
    current = undefined;
  };
  let start = 0;
  while (start < text.length) {
    const newline = text.indexOf("\n", start);
    const end = newline < 0 ? text.length : newline;
    const trimmed = oscamTrim(text.slice(start, end));
    start = end + 1;
    if (trimmed.length < 3 || trimmed[0] === "#") continue;
    if (trimmed[0] === "[" && trimmed[trimmed.length - 1] === "]") {
      close();
      if (trimmed.slice(1, -1).toLowerCase() === "reader") {
        readerSections++;
        current = { label: "", protocol: "", enable: "1" };
      }
      continue;
    }
    const eq = trimmed.indexOf("=");
    if (eq < 0 || !current) continue;
    // The key decides first; only these three values are ever read.
    const key = oscamTrim(trimmed.slice(0, eq)).toLowerCase();
    if (key === "label")
      current.label = Buffer.from(oscamTrim(trimmed.slice(eq + 1)), "latin1")
        .toString("utf8")
        .replaceAll(" ", "_");
    else if (key === "protocol") current.protocol = oscamTrim(trimmed.slice(eq + 1));
    else if (key === "enable") current.enable = oscamTrim(trimmed.slice(eq + 1));
  }
  close();
  return { readerSections, readers };
}
