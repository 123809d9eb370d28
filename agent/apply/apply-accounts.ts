import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { AccountOperation, type ApplyAccounts } from "../../gen/myosicam/agent/v1/agent_pb.js";
import type { DiscoveredInstance } from "../discovery/discover.js";
import { readConfFile, webifPassword } from "../oscam/conf-file.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { AccountSchema } from "../../gen/myosicam/agent/v1/snapshot_pb.js";
import { OscamParseError, parseOscamFile, printOscamFile, scanOscamFile } from "../oscam/document.js";
import { readUserFile } from "../oscam/user-file.js";
import { accountMessage } from "../snapshot.js";
import { type AccountChange, type AccountEntries, type ChangeReport, editAccounts } from "../oscam/account-edits.js";
import { OscamEditError } from "../oscam/edit.js";
import type { UnloadedChanges } from "../unloaded-changes.js";
import { replaceConfigFile } from "./config-file.js";
import { reloadUsers, WebifError } from "./webif.js";

export interface ApplyOutcome {
  succeeded: boolean;
  failureCode: string;
  detail: string;
  /** apply_accounts: one result per change, in order. */
  accountResults?: AccountChangeResult[];
}

/** One change's result as the report carries it. */
export interface AccountChangeResult {
  index: number;
  status: "applied" | "unchanged" | "failed";
  failureCode: string;
  detail: string;
  before?: AccountEntries;
  after?: AccountEntries;
  followedBy?: string;
  /** Applied, and the account is in the file: the account as OScam now reads it (as a snapshot carries it). */
  account?: MessageInitShape<typeof AccountSchema>;
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
    if (op === "add") return { op, user: c.user, set, ...(c.beforeUser ? { beforeUser: c.beforeUser } : {}) };
    if (op === "update") return { op, user: c.user, set, unset: c.unset };
    return { op, user: c.user };
  });
}

/** Every change failed with the same code and detail (the file as it was). */
const allFailed = (reports: readonly ChangeReport[], failureCode: string, detail: string): AccountChangeResult[] =>
  reports.map((r, index) => ({ index, status: "failed", failureCode, detail, before: r.before, after: r.before }));

/**
 * Applies account changes to an instance's oscam.user (DESIGN.md §3.4): a minimal edit of the
 * lossless model — a line OScam or a person changed since the last sync is kept, only the targeted
 * lines move — written atomically with a backup, then OScam is asked to re-read the file at once
 * through its WebIF. When OScam fails that reload, the previous file is put back and reloaded
 * (`reload_failed_rolled_back`); only when that reload fails too is it `file_written_reload_failed`.
 * Each way to fail has its own code; with `independent`, each change is reported on its own.
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
  let reports: ChangeReport[];
  try {
    const edited = editAccounts(parseOscamFile(before, "oscam.user"), changesOf(payload), { independent: payload.independent });
    after = printOscamFile(edited.doc);
    reports = edited.reports;
  } catch (err) {
    if (err instanceof OscamEditError || err instanceof OscamParseError) return { succeeded: false, failureCode: "validation_failed", detail: err.message };
    throw err;
  }
  const refused = reports.filter((r) => r.status === "failed").length;
  /** The per-change results once the file is in effect (or not written at all). */
  const results = (): AccountChangeResult[] =>
    reports.map((r, index) => ({
      index,
      status: r.status,
      failureCode: r.status === "failed" ? "validation_failed" : "",
      detail: r.reason ?? (r.status === "unchanged" ? "oscam.user already had these values" : "written and loaded by OScam"),
      before: r.before,
      after: r.status === "failed" ? r.before : r.after,
      followedBy: r.followedBy,
    }));
  const partly = (outcome: ApplyOutcome): ApplyOutcome =>
    refused === 0 || !outcome.succeeded
      ? outcome
      : {
          succeeded: false,
          failureCode: "changes_failed",
          detail: `${refused} of ${reports.length} changes could not be made; ${outcome.detail}`,
          accountResults: outcome.accountResults,
        };
  if (after.equals(before)) {
    const detail = refused === reports.length ? "no change could be made; nothing was written" : "oscam.user already had these values; nothing was written";
    return partly({ succeeded: refused < reports.length, failureCode: refused === reports.length ? "changes_failed" : "", detail, accountResults: results() });
  }
  try {
    await replaceConfigFile(path, after);
  } catch (err) {
    const detail = `${path} could not be written (${fileErrorInWords(err)}); it is unchanged`;
    return { succeeded: false, failureCode: "file_write_failed", detail, accountResults: allFailed(reports, "file_write_failed", detail) };
  }
  const written = `oscam.user written (${payload.changes.length - refused} change${payload.changes.length - refused === 1 ? "" : "s"})`;
  const reload = await reloadUsersOf(instance);
  if (reload.ok) {
    unloaded?.loaded(instance.configDir);
    return partly({ succeeded: true, failureCode: "", detail: `${written} and reloaded by OScam`, accountResults: withAccounts(results(), payload, after) });
  }
  if (!reload.attempted) {
    // No reload is possible (WebIF off or read-only, OScam not running): the file stays; OScam reads it when it (re)starts.
    if (instance.running) unloaded?.written(instance.configDir, instance.pid, payload.changes.length);
    const detail = `${written}; ${reload.detail}`;
    return { succeeded: false, failureCode: reload.code, detail, accountResults: notLoaded(results(), reload.code, detail) };
  }
  // OScam failed the reload: put the previous file back and have OScam read that.
  try {
    await replaceConfigFile(path, before);
  } catch (err) {
    const detail = `${written}; OScam did not reload it (${reload.detail}), and the previous file could not be put back (${(err as Error).message})`;
    if (instance.running) unloaded?.written(instance.configDir, instance.pid, payload.changes.length);
    return { succeeded: false, failureCode: "file_written_reload_failed", detail, accountResults: notLoaded(results(), "file_written_reload_failed", detail) };
  }
  const again = await reloadUsersOf(instance);
  if (again.ok) {
    unloaded?.loaded(instance.configDir);
    const detail = `${written}, but OScam did not reload it (${reload.detail}); the previous oscam.user was put back and OScam reloaded it`;
    return { succeeded: false, failureCode: "reload_failed_rolled_back", detail, accountResults: allFailed(reports, "reload_failed_rolled_back", detail) };
  }
  const detail = `${written}, but OScam did not reload it (${reload.detail}); the previous oscam.user was put back, and OScam did not reload that either (${again.detail}): it holds what it last loaded until it reloads or restarts`;
  // The first refusal names the cause (a wrong WebIF password stays webif_auth_failed).
  return { succeeded: false, failureCode: reload.code, detail, accountResults: allFailed(reports, reload.code, detail) };
}

/**
 * The applied results with the account each leaves in `file` (as OScam reads it), so the panel
 * shows the change without waiting for a snapshot. An account the file does not show (deleted)
 * gets none; nor does any when the file cannot be read as OScam would (then the resync tells).
 */
function withAccounts(results: AccountChangeResult[], payload: ApplyAccounts, file: Buffer): AccountChangeResult[] {
  let accounts: ReturnType<typeof readUserFile>["accounts"];
  try {
    accounts = readUserFile(scanOscamFile(file, "oscam.user")).accounts;
  } catch (err) {
    if (err instanceof OscamParseError) return results;
    throw err;
  }
  // Names as OScam loads them are unique (it renames a duplicate, and so does readUserFile).
  const byUser = new Map(accounts.map((a) => [a.user, a]));
  return results.map((r) => {
    const account = r.status === "applied" ? byUser.get(payload.changes[r.index]?.user ?? "") : undefined;
    return account ? { ...r, account: accountMessage(account) } : r;
  });
}

/** What a failed file operation ran into, in words an operator acts on (the errno code after it). */
export function fileErrorInWords(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const words: Record<string, string> = {
    ENOSPC: "no space left on the device",
    EDQUOT: "the disk quota is exceeded",
    EROFS: "the file system is read-only",
    EACCES: "permission denied",
    EPERM: "operation not permitted",
    EIO: "an input/output error of the disk",
  };
  if (code && words[code]) return `${words[code]}, ${code}`;
  return code ?? (err as Error).message;
}

/** Results for a file written but not loaded: the changes made are failed with why, the file's keys as now. */
const notLoaded = (results: AccountChangeResult[], failureCode: string, detail: string): AccountChangeResult[] =>
  results.map((r) => (r.status === "applied" ? { ...r, status: "failed", failureCode, detail } : r));

type ReloadAnswer = { ok: true } | { ok: false; attempted: boolean; code: string; detail: string };

/** Asks OScam to re-read oscam.user through its WebIF; `attempted` is false when no reload is possible at all. */
async function reloadUsersOf(instance: DiscoveredInstance): Promise<ReloadAnswer> {
  const confDoc = parseOscamFile(await readFile(join(instance.configDir, "oscam.conf")).catch(() => Buffer.alloc(0)), "oscam.conf");
  const conf = readConfFile(confDoc);
  if (!conf.webif.enabled)
    return { ok: false, attempted: false, code: "file_written_reload_failed", detail: "the WebIF is off, so OScam reads oscam.user only at its next restart" };
  if (conf.webif.readonly)
    return {
      ok: false,
      attempted: false,
      code: "webif_readonly",
      detail: "the WebIF is read-only (httpreadonly = 1) and refuses to reload users; OScam reads oscam.user at its next restart",
    };
  try {
    await reloadUsers({ host: instance.webif.host, port: conf.webif.port, ssl: conf.webif.ssl, user: conf.webif.user, password: webifPassword(confDoc) });
    return { ok: true };
  } catch (err) {
    if (!(err instanceof WebifError)) throw err;
    // Nothing answers and no OScam process runs: there is nothing to reload; it reads the file when it starts.
    if (err.code === "webif_unreachable" && !instance.running) {
      return {
        ok: false,
        attempted: false,
        code: "file_written_reload_failed",
        detail: `OScam is not running (${err.message}); it reads oscam.user when it starts`,
      };
    }
    return { ok: false, attempted: true, code: err.code === "webif_auth_failed" ? "webif_auth_failed" : "file_written_reload_failed", detail: err.message };
  }
}

/** Asks OScam to re-read oscam.user through its WebIF, with the credentials of oscam.conf (the `reload` command). */
export async function reloadInstanceUsers(instance: DiscoveredInstance, unloaded?: UnloadedChanges): Promise<ApplyOutcome> {
  const reload = await reloadUsersOf(instance);
  if (reload.ok) {
    unloaded?.loaded(instance.configDir);
    return { succeeded: true, failureCode: "", detail: "OScam re-read oscam.user" };
  }
  const code = reload.code === "file_written_reload_failed" ? "reload_failed" : reload.code;
  return { succeeded: false, failureCode: code, detail: reload.attempted ? `OScam was not told to reload oscam.user: ${reload.detail}` : reload.detail };
}
