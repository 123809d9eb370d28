import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { isOscamProgram, parseOscamArgs, type OscamArgs } from "./cmdline.js";

/** An OScam instance a systemd unit starts. */
export interface OscamUnit extends OscamArgs {
  /** e.g. `oscam.service` or `oscam@main.service`. */
  unit: string;
}

export const defaultUnitDirs = ["/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"];

/** Splits an ExecStart command line: whitespace-separated words, "…" and '…' quoting. */
export function splitCommand(line: string): string[] {
  const words: string[] = [];
  const pattern = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (const m of line.matchAll(pattern)) words.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : (m[2] ?? m[3]!));
  return words;
}

/** The argv of a unit file's (last) ExecStart, without systemd's prefix characters. */
export function execStartOf(unitText: string): string[] | undefined {
  let argv: string[] | undefined;
  // Continuation lines end with a backslash.
  for (const line of unitText.replace(/\\\r?\n/g, " ").split(/\r?\n/)) {
    const m = /^\s*ExecStart\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    const words = splitCommand(m[1]!);
    if (words.length === 0) continue;
    words[0] = words[0]!.replace(/^[-@:+!]+/, "");
    argv = words;
  }
  return argv;
}

async function list(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => [] as string[]);
}

/**
 * Units whose ExecStart runs OScam, in `dirs` (the first directory that has a unit name wins, as
 * /etc overrides /lib). A template `oscam@.service` counts once per enabled instance
 * (`*.wants/oscam@<name>.service`), with `%i`/`%I` replaced.
 */
export async function findOscamUnits(dirs: readonly string[] = defaultUnitDirs): Promise<OscamUnit[]> {
  const seen = new Set<string>();
  const units: OscamUnit[] = [];
  const instances = new Map<string, Set<string>>();
  for (const dir of dirs) {
    for (const entry of await list(dir)) {
      if (!entry.endsWith(".wants")) continue;
      for (const wanted of await list(join(dir, entry))) {
        const m = /^(.+)@(.+)\.service$/.exec(wanted);
        if (m) (instances.get(m[1]!) ?? instances.set(m[1]!, new Set()).get(m[1]!)!).add(m[2]!);
      }
    }
  }
  for (const dir of dirs) {
    for (const entry of await list(dir)) {
      if (!entry.endsWith(".service") || seen.has(entry)) continue;
      seen.add(entry);
      const text = await readFile(join(dir, entry), "utf8").catch(() => undefined);
      const argv = text === undefined ? undefined : execStartOf(text);
      if (!argv || !isOscamProgram(argv[0]!)) continue;
      const template = /^(.+)@\.service$/.exec(entry);
      if (!template) {
        units.push({ unit: entry, ...parseOscamArgs(argv.slice(1)) });
        continue;
      }
      for (const instance of instances.get(template[1]!) ?? []) {
        const args = argv
          .slice(1)
          .map((a) =>
            a
              .replaceAll("%i", instance)
              .replaceAll("%I", instance.replace(/\\x([0-9a-f]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16))).replaceAll("-", "/")),
          );
        units.push({ unit: `${template[1]}@${instance}.service`, ...parseOscamArgs(args) });
      }
    }
  }
  return units;
}
