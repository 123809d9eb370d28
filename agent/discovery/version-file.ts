/** What `<tempdir>/oscam.version` says (OSCAM.md §5.4); every field may be missing. */
export interface VersionFile {
  version?: string;
  /** The git commit after `@` in current versions (`2.25.12-11931@5e0f1c2a`). */
  commit?: string;
  /** Unix seconds of the start. */
  startTime?: number;
  buildDate?: string;
  /** The SUPERVISOR's pid (getppid), not OScam's own: 1 under systemd with `-r 0`. */
  supervisorPid?: number;
  tempDir?: string;
  configDir?: string;
  /** 0 means the WebIF is off; never shows the `+` of SSL. */
  webifPort?: number;
  /**
   * The oscam.conf sections of protocol modules, by whether the binary has them (the feature
   * lines `camd 3.3x: yes`, `Pandora: no`, …); a section missing here was not listed.
   */
  modules: Record<string, boolean>;
}

/** Feature labels of oscam.version (lower case) → the oscam.conf section of that module. */
const moduleSections: Readonly<Record<string, readonly string[]>> = {
  "camd 3.3x": ["camd33"],
  "camd 3.5 udp": ["cs357x"],
  "camd 3.5 tcp": ["cs378x"],
  newcamd: ["newcamd"],
  cccam: ["cccam"],
  gbox: ["gbox"],
  radegast: ["radegast"],
  scam: ["scam"],
  serial: ["serial"],
  pandora: ["pandora"],
  streamrelay: ["streamrelay"],
  monitor: ["monitor"],
};

/** Parses both formats: labels case-insensitive, split at the first `:`. Never throws. */
export function parseVersionFile(text: string): VersionFile {
  const result: VersionFile = { modules: {} };
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const label = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (!value) continue;
    switch (label) {
      case "version": {
        const m = /^(.+)@([0-9a-f]{6,40})$/.exec(value);
        result.version = (m ? m[1]! : value).slice(0, 128);
        if (m) result.commit = m[2];
        break;
      }
      case "unix starttime":
        if (/^\d+$/.test(value)) result.startTime = Number(value);
        break;
      case "build date":
        result.buildDate = value.slice(0, 64);
        break;
      case "pid":
        if (/^\d+$/.test(value)) result.supervisorPid = Number(value);
        break;
      case "tempdir":
        result.tempDir = value;
        break;
      case "configdir":
        result.configDir = value;
        break;
      case "webifport":
        if (/^\+?\d+$/.test(value)) result.webifPort = Number(value.replace("+", ""));
        break;
      default:
        for (const section of moduleSections[label] ?? []) if (value === "yes" || value === "no") result.modules[section] = value === "yes";
    }
  }
  return result;
}
