import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { AccountOperation, type ApplyAccounts } from "../../gen/myosicam/agent/v1/agent_pb.js";
import type { DiscoveredInstance } from "../discovery/discover.js";
import { readConfFile, webifPassword } from "../oscam/conf-file.js";
import { OscamParseError, parseOscamFile, printOscamFile } from "../oscam/document.js";
import { type AccountChange, applyAccountChanges } from "../oscam/account-edits.js";
import { OscamEditError } from "../oscam/edit.js";
import type { UnloadedChanges } from "../unloaded-changes.js";
import { replaceConfigFile } from "./config-file.js";
import { reloadUsers, WebifError } from "./webif.js";

export interface ApplyOutcome {
  succeeded: boolean;
  failureCode: string;
  detail: string;
}

const ops: Record<AccountOperation, AccountChange["op"] | undefined> = {
  [AccountOperation.UNSPECIFIED]: undefined,
  [AccountOperation.ADD]: "add",
  [AccountOperation.UPDATE]: "update",
  [AccountOperation.DISABLE]: "disable",
  [AccountOperation.ENABLE]: "enable",
  [AccountOperation.DELETE]: "delete",
};

/** The proto changes as edits of the file model; throws OscamEditError naming a bad one. */
function changesOf(payload: ApplyAccounts): AccountChange[] {
  return payload.changes.map((c, i) => {
    const op = ops[c.operation];
    if (!op) throw new OscamEditError(`change ${i + 1}: no operation`);
    const set = Object.fromEntries(c.set.map((kv) => [kv.key.toLowerCase(), kv.value]));
    if (op === "add") return { op, user: c.user, set };
    if (op === "update") return { op, user: c.user, set, unset: c.unset };
    return { op, user: c.user };
  });
}

/**
 * Applies account changes to an instance's oscam.user (DESIGN.md §3.4): a minimal edit of the
 * lossless model — a line OScam or a person changed since the last sync is kept, only the targeted
 * lines move — written atomically with a backup, then OScam is asked to re-read the file at once
 * through its WebIF. Each way to fail has its own code.
 */
export async function applyAccounts(instance: DiscoveredInstance, payload: ApplyAccounts, unloaded?: UnloadedChanges): Promise<ApplyOutcome> {
  const path = join(instance.configDir, "oscam.user");
  let before: Buffer;
  try {
    before = await readFile(path);
  } catch (err) {
    return { succeeded: false, failureCode: "file_unreadable", detail: `${path} cannot be read (${(err as NodeJS.ErrnoException).code})` };
  }
  let after: Buffer;
  try {
    after = printOscamFile(applyAccountChanges(parseOscamFile(before, "oscam.user"), changesOf(payload)));
  } catch (err) {
    if (err instanceof OscamEditError || err instanceof OscamParseError) return { succeeded: false, failureCode: "validation_failed", detail: err.message };
    throw err;
  }
  if (after.equals(before)) return { succeeded: true, failureCode: "", detail: "oscam.user already had these values; nothing was written" };
  try {
    await replaceConfigFile(path, after);
  } catch (err) {
    return {
      succeeded: false,
      failureCode: "file_write_failed",
      detail: `${path} could not be written (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); it is unchanged`,
    };
  }
  const outcome = await reloadInstanceUsers(
    instance,
    `oscam.user written (${payload.changes.length} change${payload.changes.length === 1 ? "" : "s"})`,
    unloaded,
  );
  if (!outcome.succeeded && instance.running) unloaded?.written(instance.configDir, instance.pid, payload.changes.length);
  return outcome;
}

/**
 * Asks OScam to re-read oscam.user through its WebIF, with the credentials of oscam.conf. `done`
 * says what happened before (a write), and prefixes every outcome; without it (the `reload`
 * command) a failure is `reload_failed` rather than `file_written_reload_failed`.
 */
export async function reloadInstanceUsers(instance: DiscoveredInstance, done?: string, unloaded?: UnloadedChanges): Promise<ApplyOutcome> {
  const prefix = done ? `${done}; ` : "";
  const failed = done ? "file_written_reload_failed" : "reload_failed";
  const confDoc = parseOscamFile(await readFile(join(instance.configDir, "oscam.conf")).catch(() => Buffer.alloc(0)), "oscam.conf");
  const conf = readConfFile(confDoc);
  if (!conf.webif.enabled)
    return { succeeded: false, failureCode: failed, detail: `${prefix}the WebIF is off, so OScam reads oscam.user only at its next restart` };
  if (conf.webif.readonly)
    return {
      succeeded: false,
      failureCode: "webif_readonly",
      detail: `${prefix}the WebIF is read-only (httpreadonly = 1) and refuses to reload users; OScam reads oscam.user at its next restart`,
    };
  try {
    await reloadUsers({ host: instance.webif.host, port: conf.webif.port, ssl: conf.webif.ssl, user: conf.webif.user, password: webifPassword(confDoc) });
  } catch (err) {
    if (!(err instanceof WebifError)) throw err;
    return {
      succeeded: false,
      failureCode: err.code === "webif_auth_failed" ? "webif_auth_failed" : failed,
      detail: `${prefix}OScam was not told to reload oscam.user: ${err.message}`,
    };
  }
  unloaded?.loaded(instance.configDir);
  return { succeeded: true, failureCode: "", detail: done ? `${done} and reloaded by OScam` : "OScam re-read oscam.user" };
}
