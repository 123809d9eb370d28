/** What an OScam command line says about an instance (OSCAM.md §5.2). */
export interface OscamArgs {
  configDir?: string;
  tempDir?: string;
  pidFile?: string;
  /** `-r`: 0 means no supervisor (systemd restarts it). */
  restartMode?: number;
  daemon: boolean;
}

/** OScam's getopt string: options followed by `:` take an argument. */
const optionsWithArgument = new Set(["B", "c", "d", "g", "I", "p", "r", "t", "w"]);
const longOptions: Record<string, string> = {
  "config-dir": "c",
  "temp-dir": "t",
  pidfile: "B",
  restart: "r",
  daemon: "b",
  debug: "d",
  "pending-ecm": "p",
  wait: "w",
  "syslog-ident": "I",
  gbox: "g",
};

/**
 * Parses OScam's arguments the way getopt_long does: `-c /x`, `-c/x`, `--config-dir=/x`,
 * `--config-dir /x`, and clustered short flags (`-bc /x`). Unknown options are skipped.
 */
export function parseOscamArgs(argv: readonly string[]): OscamArgs {
  const result: OscamArgs = { daemon: false };
  const set = (option: string, value: string | undefined) => {
    if (value === undefined) return;
    if (option === "c") result.configDir = value;
    else if (option === "t") result.tempDir = value;
    else if (option === "B") result.pidFile = value;
    else if (option === "r") result.restartMode = Number.parseInt(value, 10);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") break;
    if (arg.startsWith("--")) {
      const [name, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
      const option = longOptions[name];
      if (!option) continue;
      if (option === "b") result.daemon = true;
      else if (optionsWithArgument.has(option)) set(option, inline ?? argv[++i]);
      continue;
    }
    if (!arg.startsWith("-") || arg.length < 2) continue;
    for (let k = 1; k < arg.length; k++) {
      const option = arg[k]!;
      if (option === "b") result.daemon = true;
      if (optionsWithArgument.has(option)) {
        set(option, k + 1 < arg.length ? arg.slice(k + 1) : argv[++i]);
        break;
      }
    }
  }
  return result;
}

/** Whether argv[0] is an OScam binary (`oscam`, `/usr/local/bin/oscam-emu`, `oscam_2.25` …). */
export function isOscamProgram(program: string): boolean {
  const base = program.slice(program.lastIndexOf("/") + 1).toLowerCase();
  return /^oscam([-_.].*)?$/.test(base);
}
