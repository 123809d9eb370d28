import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { ApplyConfig } from "../../gen/myosicam/agent/v1/agent_pb.js";
import type { DiscoveredInstance } from "../discovery/discover.js";
import { OscamParseError, parseOscamFile, printOscamFile, sectionsOf, type OscamDocument } from "../oscam/document.js";
import { appendSection, OscamEditError, setKey, unsetKey } from "../oscam/edit.js";
import { type ApplyOutcome, fileErrorInWords } from "./apply-accounts.js";
import { replaceConfigFile } from "./config-file.js";

/**
 * Sets and unsets keys of oscam.conf sections (names as written: OScam's section names are
 * case-sensitive; a missing section is appended). OScam reads oscam.conf only when it starts, so
 * every changed key is reported as needing a restart; the file is replaced atomically with a backup.
 */
export async function applyConfig(instance: DiscoveredInstance, payload: ApplyConfig): Promise<ApplyOutcome & { restartRequiredKeys: string[] }> {
  const path = join(instance.configDir, "oscam.conf");
  const none = { restartRequiredKeys: [] as string[] };
  let before: Buffer;
  try {
    before = await readFile(path);
  } catch (err) {
    return { ...none, succeeded: false, failureCode: "file_unreadable", detail: `${path} cannot be read (${(err as NodeJS.ErrnoException).code})` };
  }
  let doc: OscamDocument;
  const changed: string[] = [];
  try {
    doc = parseOscamFile(before, "oscam.conf");
    for (const change of payload.changes) {
      const header = sectionsOf(doc).find((s) => s.name === change.section)?.header;
      const key = change.key.toLowerCase();
      if (change.change.case === "set") {
        doc = header === undefined ? appendSection(doc, change.section, [[key, change.change.value]]) : setKey(doc, header, key, change.change.value);
      } else if (header !== undefined) {
        doc = unsetKey(doc, header, key);
      }
      changed.push(`${change.section}.${key}`);
    }
  } catch (err) {
    if (err instanceof OscamEditError || err instanceof OscamParseError)
      return { ...none, succeeded: false, failureCode: "validation_failed", detail: err.message };
    throw err;
  }
  const after = printOscamFile(doc);
  if (after.equals(before)) return { ...none, succeeded: true, failureCode: "", detail: "oscam.conf already had these values; nothing was written" };
  try {
    await replaceConfigFile(path, after);
  } catch (err) {
    return {
      ...none,
      succeeded: false,
      failureCode: "file_write_failed",
      detail: `${path} could not be written (${fileErrorInWords(err)}); it is unchanged`,
    };
  }
  const keys = [...new Set(changed)];
  return {
    succeeded: true,
    failureCode: "",
    detail: `oscam.conf written; ${keys.length} changed key${keys.length === 1 ? "" : "s"} take effect when OScam restarts`,
    restartRequiredKeys: keys,
  };
}
