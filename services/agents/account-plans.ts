import { Code, ConnectError } from "@connectrpc/connect";
import { userNameProblem } from "../../agent/oscam/account-edits.js";
import { isAccountKey, maxGroup, maxProvidsPerCaid } from "../../agent/oscam/user-file.js";

/**
 * What a change set does to each account, worked out on the panel before anything is sent: the
 * edits applied to the account's keys as the panel last saw them, checked the way OScam reads them
 * (OSCAM.md §3), and turned into one apply_accounts change per account. Pure: no database.
 */

/** An account's oscam.user keys (lower case) → value, without `pwd` (passwords are never in these maps). */
export type Entries = Record<string, string>;

/** The account keys a panel view carries, as a map of what oscam.user says. */
export function entriesOfFields(a: {
  enabled: boolean;
  groups: readonly number[];
  caid: string;
  ident: string;
  expiryDate: string;
  unreadableExpiry: string;
  description: string;
  extra: ReadonlyArray<{ key: string; value: string }>;
}): Entries {
  const entries: Entries = {};
  if (!a.enabled) entries.disabled = "1";
  if (a.groups.length > 0) entries.group = a.groups.join(",");
  if (a.caid) entries.caid = a.caid;
  if (a.ident) entries.ident = a.ident;
  if (a.expiryDate || a.unreadableExpiry) entries.expdate = a.expiryDate || a.unreadableExpiry;
  if (a.description) entries.description = a.description;
  for (const { key, value } of a.extra) if (key !== "user" && key !== "pwd") entries[key] = value;
  return entries;
}

/** One field of a planned or recorded change; passwords are shown masked. */
export interface FieldChange {
  field: string;
  before: string;
  after: string;
}

export const maskedPassword = "••••••";

/** The field-level difference of two key maps (`pwd` handled by the caller). */
export function diffEntries(before: Entries | null, after: Entries | null): FieldChange[] {
  const keys = new Set([...Object.keys(before ?? {}), ...Object.keys(after ?? {})]);
  const changes: FieldChange[] = [];
  for (const field of keys) {
    const b = before?.[field] ?? "";
    const a = after?.[field] ?? "";
    if (b !== a || (before && after && field in before !== field in after)) changes.push({ field, before: b, after: a });
  }
  return changes.sort((x, y) => x.field.localeCompare(y.field));
}

/** A change as an apply_accounts command carries it (the agent contract's JSON form). */
export interface AgentChange {
  operation: "ACCOUNT_OPERATION_ADD" | "ACCOUNT_OPERATION_UPDATE" | "ACCOUNT_OPERATION_DELETE";
  user: string;
  set?: Array<{ key: string; value: string }>;
  unset?: string[];
  beforeUser?: string;
}

export type ItemOperationName = "create" | "update" | "delete";

/** A change set's plan for one account. */
export interface PlannedItem {
  instanceId: string;
  user: string;
  operation: ItemOperationName;
  /** Absent when the account already has what was asked (the item is `unchanged`). */
  change?: AgentChange;
  planned: FieldChange[];
}

/** A refusal: which account, which field, why. */
export interface PlanProblem {
  account: string;
  field: string;
  message: string;
}

/** InvalidArgument listing the problems (the first 20, and how many more). */
export function planRefusal(problems: readonly PlanProblem[]): ConnectError {
  const shown = problems.slice(0, 20).map((p) => `${p.account}: ${p.field}: ${p.message}`);
  const more = problems.length > 20 ? `; and ${problems.length - 20} more` : "";
  return new ConnectError(`nothing was stored or sent: ${shown.join("; ")}${more}`, Code.InvalidArgument);
}

const isoDate = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Why OScam would not read `date` as the expiry the operator means, or undefined. */
export function dateProblem(date: string): string | undefined {
  const m = isoDate.exec(date);
  if (!m) return `"${date}" is not a date as YYYY-MM-DD`;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const d = new Date(Date.UTC(year, month - 1, day));
  if (d.getUTCFullYear() !== year || d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day) return `"${date}" is not a day of the calendar`;
  if (year < 1970) return `"${date}" is before 1970, which OScam reads as expired`;
  return undefined;
}

const caidEntry = /^[0-9A-Fa-f]{2,4}(&[0-9A-Fa-f]{1,4})?(:[0-9A-Fa-f]{1,4})?$/;

/** Why OScam would not read a caid list (`CAID[&mask][:target][,…]`, OSCAM.md §3), or undefined. */
export function caidProblem(caid: string): string | undefined {
  for (const entry of caid.split(",").map((e) => e.trim())) {
    if (entry === "") return `"${caid}" has an empty entry`;
    if (!caidEntry.test(entry)) return `"${entry}" is not CAID[&mask][:target] in hex (e.g. 0963, 1833&FFDF:1702)`;
  }
  return undefined;
}

const identPart = /^([0-9A-Fa-f]{1,4}):([0-9A-Fa-f]{1,6}(,[0-9A-Fa-f]{1,6})*)$/;

/** Why OScam would not read an ident list (`CAID:provid[,provid…][;…]`, at most 32 per CAID), or undefined. */
export function identProblem(ident: string): string | undefined {
  for (const part of ident.split(";").map((p) => p.trim())) {
    const m = identPart.exec(part.replace(/\s+/g, ""));
    if (!m) return `"${part}" is not CAID:provid[,provid…] in hex (e.g. 0500:030B00,042800)`;
    const ids = m[2]!.split(",");
    if (ids.length > maxProvidsPerCaid) return `CAID ${m[1]} lists ${ids.length} provids; OScam keeps only ${maxProvidsPerCaid}`;
  }
  return undefined;
}

/** Why `key` cannot be set through `keys` (not an account key, or one with its own edit), or undefined. */
export function keyProblem(key: string): string | undefined {
  const lower = key.toLowerCase();
  if (lower === "user") return "user names are not changed by an edit (create the account anew)";
  if (lower === "pwd") return "set the password with set_password";
  if (!isAccountKey(lower)) return `"${key}" is not a key OScam reads in [account] (OSCAM.md §3)`;
  return undefined;
}

/** Why a value cannot be written to `key`, or undefined. */
export function valueProblem(key: string, value: string): string | undefined {
  if (/[\r\n\0]/.test(value)) return "a value may not contain a line break or a NUL byte";
  if (value === "") return undefined;
  switch (key) {
    case "expdate":
      return dateProblem(value);
    case "caid":
      return caidProblem(value);
    case "ident":
    case "chid":
      return identProblem(value);
    case "group":
      return value.split(",").every((g) => /^\d+$/.test(g.trim()) && Number(g) >= 1 && Number(g) <= maxGroup)
        ? undefined
        : `"${value}" is not a list of groups from 1 to ${maxGroup}`;
    default:
      return undefined;
  }
}

/** One edit of a change set, as the service hands it over. */
export type Edit =
  | { kind: "enable" | "disable" | "delete" }
  | { kind: "extendExpiryDays"; days: number }
  | { kind: "setExpiry"; date: string }
  | { kind: "setGroups"; groups: readonly number[] }
  | { kind: "renameGroup"; from: number; to: number }
  | { kind: "setCaid"; caid: string }
  | { kind: "setIdent"; ident: string }
  | { kind: "setDescription"; description: string }
  | { kind: "setPassword"; password: string }
  | { kind: "keys"; set: ReadonlyArray<{ key: string; value: string }>; unset: readonly string[] };

/** The change set's edits in words, e.g. "disable; extend expiry by 30 days". */
export function describeEdits(edits: readonly Edit[], creations: number): string {
  const words = edits.map(describeEdit);
  if (creations > 0) words.unshift(`create ${creations} account${creations === 1 ? "" : "s"}`);
  return words.join("; ");
}

function describeEdit(e: Edit): string {
  switch (e.kind) {
    case "enable":
    case "disable":
    case "delete":
      return e.kind;
    case "extendExpiryDays":
      return `extend expiry by ${e.days} day${e.days === 1 ? "" : "s"}`;
    case "setExpiry":
      return e.date ? `set expiry to ${e.date}` : "set expiry to never";
    case "setGroups":
      return `set groups to ${e.groups.join(",") || "none"}`;
    case "renameGroup":
      return `change group ${e.from} to ${e.to}`;
    case "setCaid":
      return `set caid to ${e.caid || "none"}`;
    case "setIdent":
      return `set ident to ${e.ident || "none"}`;
    case "setDescription":
      return "set description";
    case "setPassword":
      return "set password";
    case "keys":
      return `set ${[...e.set.map((kv) => kv.key), ...e.unset.map((k) => `-${k}`)].join(", ")}`;
  }
}

/** Checks the edits themselves (independent of any account): problems named by field. */
export function checkEdits(edits: readonly Edit[]): PlanProblem[] {
  const problems: PlanProblem[] = [];
  const of = (field: string, message: string | undefined) => {
    if (message) problems.push({ account: "edits", field, message });
  };
  if (edits.some((e) => e.kind === "delete") && edits.length > 1) of("edits", "delete cannot be combined with other edits");
  for (const e of edits) {
    if (e.kind === "setExpiry" && e.date) of("set_expiry", dateProblem(e.date));
    if (e.kind === "setCaid" && e.caid) of("set_caid", caidProblem(e.caid));
    if (e.kind === "setIdent" && e.ident) of("set_ident", identProblem(e.ident));
    if (e.kind === "keys") {
      for (const kv of e.set) of(`keys.${kv.key}`, keyProblem(kv.key) ?? valueProblem(kv.key.toLowerCase(), kv.value));
      for (const k of e.unset) of(`keys.${k}`, keyProblem(k));
    }
  }
  return problems;
}

/** `date` plus `days`, as YYYY-MM-DD. */
export function addDays(date: string, days: number): string {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

/** The account's keys after the edits (a new map; `pwd` comes back separately). */
export function applyEdits(current: Entries, edits: readonly Edit[], today: string): { entries: Entries; password?: string } {
  const next: Entries = { ...current };
  let password: string | undefined;
  const setOrUnset = (key: string, value: string) => {
    if (value === "") delete next[key];
    else next[key] = value;
  };
  for (const e of edits) {
    switch (e.kind) {
      case "enable":
        delete next.disabled;
        break;
      case "disable":
        next.disabled = "1";
        break;
      case "delete":
        break;
      case "extendExpiryDays": {
        // A never-expiring account stays so; an expired or unreadable one runs from today.
        if (!next.expdate) break;
        const readable = isoDate.test(next.expdate) && dateProblem(next.expdate) === undefined;
        const base = readable && next.expdate > today ? next.expdate : today;
        next.expdate = addDays(base, e.days);
        break;
      }
      case "setExpiry":
        setOrUnset("expdate", e.date);
        break;
      case "setGroups":
        setOrUnset("group", [...new Set(e.groups)].sort((a, b) => a - b).join(","));
        break;
      case "renameGroup": {
        const groups = (next.group ?? "")
          .split(",")
          .filter((g) => g.trim() !== "")
          .map((g) => Number(g.trim()));
        if (!groups.includes(e.from)) break;
        setOrUnset("group", [...new Set(groups.map((g) => (g === e.from ? e.to : g)))].join(","));
        break;
      }
      case "setCaid":
        setOrUnset("caid", e.caid);
        break;
      case "setIdent":
        setOrUnset("ident", e.ident);
        break;
      case "setDescription":
        setOrUnset("description", e.description);
        break;
      case "setPassword":
        password = e.password;
        break;
      case "keys":
        for (const kv of e.set) setOrUnset(kv.key.toLowerCase(), kv.value);
        for (const k of e.unset) delete next[k.toLowerCase()];
        break;
    }
  }
  return { entries: next, ...(password === undefined ? {} : { password }) };
}

/** The update that turns `before` into `after` (and sets the password when given), or undefined when nothing changes. */
export function updateChange(user: string, before: Entries, after: Entries, password?: string): AgentChange | undefined {
  const set = Object.entries(after)
    .filter(([k, v]) => before[k] !== v)
    .map(([key, value]) => ({ key, value }));
  if (password !== undefined) set.push({ key: "pwd", value: password });
  const unset = Object.keys(before).filter((k) => !(k in after));
  if (set.length === 0 && unset.length === 0) return undefined;
  return { operation: "ACCOUNT_OPERATION_UPDATE", user, ...(set.length ? { set } : {}), ...(unset.length ? { unset } : {}) };
}

/** The fields of a new account as keys (pwd last, separately), checked; problems named by field. */
export function creationEntries(
  account: string,
  fields: {
    password: string;
    disabled: boolean;
    groups: readonly number[];
    caid: string;
    ident: string;
    expiryDate: string;
    description: string;
    extra: ReadonlyArray<{ key: string; value: string }>;
  },
  user: string,
): { entries: Entries; problems: PlanProblem[] } {
  const problems: PlanProblem[] = [];
  const userProblem = userNameProblem(user);
  if (userProblem) problems.push({ account, field: "user", message: userProblem });
  const entries: Entries = {};
  if (fields.description) entries.description = fields.description;
  if (fields.disabled) entries.disabled = "1";
  if (fields.groups.length > 0) entries.group = [...new Set(fields.groups)].sort((a, b) => a - b).join(",");
  if (fields.caid) entries.caid = fields.caid;
  if (fields.ident) entries.ident = fields.ident;
  if (fields.expiryDate) entries.expdate = fields.expiryDate;
  for (const kv of fields.extra) {
    const problem = keyProblem(kv.key);
    if (problem) problems.push({ account, field: kv.key, message: problem });
    else entries[kv.key.toLowerCase()] = kv.value;
  }
  for (const [key, value] of Object.entries(entries)) {
    const problem = valueProblem(key, value);
    if (problem) problems.push({ account, field: key, message: problem });
  }
  if (/[\r\n\0]/.test(fields.password)) problems.push({ account, field: "password", message: "a password may not contain a line break or a NUL byte" });
  return { entries, problems };
}

/** The add change of a new account: pwd first after the user, as OScam's WebIF writes accounts. */
export function addChange(user: string, entries: Entries, password: string, beforeUser?: string): AgentChange {
  const set = [...(password ? [{ key: "pwd", value: password }] : []), ...Object.entries(entries).map(([key, value]) => ({ key, value }))];
  return { operation: "ACCOUNT_OPERATION_ADD", user, set, ...(beforeUser ? { beforeUser } : {}) };
}

/** The planned field changes shown for an item; a password change is masked. */
export function plannedChanges(before: Entries | null, after: Entries | null, passwordChanged: boolean): FieldChange[] {
  const changes = diffEntries(before, after);
  if (passwordChanged) changes.push({ field: "pwd", before: before ? maskedPassword : "", after: after ? maskedPassword : "" });
  return changes;
}
