import { readFile } from "node:fs/promises";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  AccountService,
  AccountSort,
  AccountState,
  ChangeSetStatus,
  ChangeSource,
  ItemOperation,
  ItemStatus,
  type Account,
  type AccountEditSchema,
  type AccountFilterSchema,
  type ChangeSet,
} from "../gen/myosicam/panel/v1/account_pb.js";
import { InstanceService } from "../gen/myosicam/panel/v1/instance_pb.js";
import { isoOf, printJson } from "./context.js";
import { findServer, panelApi } from "./panel-client.js";
import { readStdin } from "./stdin.js";

/** `myosicam accounts …`: the fleet-wide account table and change sets, through AccountService. */

type Api = Awaited<ReturnType<typeof panelApi>>;
type Filter = MessageInitShape<typeof AccountFilterSchema>;
type Edit = MessageInitShape<typeof AccountEditSchema>;

const stateNames: Record<string, AccountState> = {
  active: AccountState.ACTIVE,
  disabled: AccountState.DISABLED,
  expired: AccountState.EXPIRED,
  expiring: AccountState.EXPIRING,
};
const sortNames: Record<string, AccountSort> = { server: AccountSort.SERVER, user: AccountSort.USER, expiry: AccountSort.EXPIRY, changed: AccountSort.CHANGED };
const lower = (value: number, names: Record<number, string>) => (names[value] ?? "unspecified").toLowerCase();
export const whereKeys = [
  "server",
  "instance",
  "user",
  "state",
  "group",
  "caid",
  "ident",
  "text",
  "description",
  "expires-before",
  "expires-after",
  "changed-by",
  "drifted",
  "expiring-days",
] as const;

/**
 * Server and instance names → ids, as the caller may see them. Each server name is looked up
 * once, when first needed (a command without names asks nothing).
 */
function instanceDirectory(api: Api) {
  const servers = new Map<string, Promise<string>>();
  const serverId = (name: string): Promise<string> => {
    let id = servers.get(name);
    if (!id) {
      id = findServer(api, name).then((s) => s.id);
      servers.set(name, id);
    }
    return id;
  };
  const instanceId = async (server: string, instance: string) => {
    const id = await serverId(server);
    const { instances } = await api.client(InstanceService).listInstances({ serverId: id });
    const found = instances.find((i) => i.name === instance || i.id === instance);
    if (!found)
      throw new ConnectError(`no instance "${instance}" on server "${server}" (it has ${instances.map((i) => i.name).join(", ") || "none"})`, Code.NotFound);
    return found.id;
  };
  return { serverId, instanceId };
}

/** `--where key=value` conditions as an AccountFilter (every one must hold). */
export async function filterOf(api: Api, where: readonly string[], directory = instanceDirectory(api)): Promise<Filter> {
  const filter: Filter = {};
  const instances: string[] = [];
  for (const condition of where) {
    const eq = condition.indexOf("=");
    const key = eq < 0 ? condition : condition.slice(0, eq);
    const value = eq < 0 ? "" : condition.slice(eq + 1);
    const needs = (what: string) => {
      if (!value) throw new ConnectError(`--where ${key}=…: give ${what}`, Code.InvalidArgument);
    };
    switch (key) {
      case "server":
        needs("a server name");
        filter.serverIds = [...(filter.serverIds ?? []), await directory.serverId(value)];
        break;
      case "instance": {
        needs("server/instance");
        const slash = value.indexOf("/");
        if (slash < 0) throw new ConnectError(`--where instance=${value}: write server/instance`, Code.InvalidArgument);
        instances.push(await directory.instanceId(value.slice(0, slash), value.slice(slash + 1)));
        break;
      }
      case "user":
        needs("a user name");
        filter.users = [...(filter.users ?? []), value];
        break;
      case "state":
        if (!(value in stateNames)) throw new ConnectError(`--where state=${value}: one of ${Object.keys(stateNames).join(", ")}`, Code.InvalidArgument);
        filter.states = [...(filter.states ?? []), stateNames[value]!];
        break;
      case "group":
        if (!/^\d+$/.test(value)) throw new ConnectError(`--where group=${value}: a group number from 1 to 64`, Code.InvalidArgument);
        filter.group = Number(value);
        break;
      case "caid":
        filter.caid = value;
        break;
      case "ident":
        filter.ident = value;
        break;
      case "text":
        filter.query = value;
        break;
      case "description":
        filter.description = value;
        break;
      case "expires-before":
        filter.expiresBefore = value;
        break;
      case "expires-after":
        filter.expiresAfter = value;
        break;
      case "changed-by":
        filter.changedBy = value;
        break;
      case "drifted":
        filter.driftedOnly = true;
        break;
      case "expiring-days":
        if (!/^\d+$/.test(value)) throw new ConnectError(`--where expiring-days=${value}: a number of days`, Code.InvalidArgument);
        filter.expiringWithinDays = Number(value);
        break;
      default:
        throw new ConnectError(`--where ${key}: not a condition; use one of ${whereKeys.join(", ")}`, Code.InvalidArgument);
    }
  }
  if (instances.length > 0) filter.instanceIds = instances;
  return filter;
}

function accountJson(a: Account) {
  return {
    id: a.id,
    server: a.serverName,
    instance: a.instanceName,
    user: a.user,
    enabled: a.enabled,
    state: lower(a.state, AccountState),
    groups: a.groups,
    caid: a.caid,
    ident: a.ident,
    expiryDate: a.expiryDate || a.unreadableExpiry || null,
    description: a.description,
    changedAt: isoOf(a.changedAt),
    changedBy: a.changedBy,
    changeSetId: a.changeSetId || null,
    drifted: a.drifted,
  };
}

/** `accounts list`: one page (or all with --all) of the fleet's accounts. */
export async function accountsListCommand(options: { where: string[]; sort?: string; desc: boolean; limit: number; json: boolean }): Promise<void> {
  const api = await panelApi();
  if (options.sort && !(options.sort in sortNames)) throw new ConnectError(`--sort: one of ${Object.keys(sortNames).join(", ")}`, Code.InvalidArgument);
  const filter = await filterOf(api, options.where);
  const found: Account[] = [];
  let token = "";
  let total = 0;
  do {
    const page = await api.client(AccountService).listAccounts({
      filter,
      sort: sortNames[options.sort ?? "server"],
      descending: options.desc,
      pageSize: Math.min(500, options.limit - found.length),
      pageToken: token,
    });
    found.push(...page.accounts);
    total = page.total;
    token = page.nextPageToken;
  } while (token && found.length < options.limit);
  if (options.json) return printJson({ total, accounts: found.map(accountJson) });
  const lines = found.map((a) => {
    const j = accountJson(a);
    return `${`${j.server}/${j.instance}`.padEnd(24)} ${j.user.padEnd(20)} ${j.state.padEnd(9)} expires ${(j.expiryDate ?? "never").padEnd(10)} groups ${j.groups.join(",") || "-"}${j.drifted ? "  DRIFTED" : ""}${j.changedBy ? `  changed by ${j.changedBy}` : ""}`;
  });
  process.stdout.write(`${lines.join("\n")}${lines.length ? "\n" : ""}${found.length} of ${total} account${total === 1 ? "" : "s"}\n`);
}

/** `--extend 30d` → days. */
function daysOf(text: string): number {
  const m = /^(\d{1,5})d?$/.exec(text);
  if (!m) throw new ConnectError(`--extend ${text}: a number of days, e.g. 30d`, Code.InvalidArgument);
  return Number(m[1]);
}

/** The edit flags of `accounts change`. */
export interface EditFlags {
  enable?: boolean;
  disable?: boolean;
  delete?: boolean;
  extend?: string;
  expire?: string;
  set: string[];
  unset: string[];
  renameGroup?: string;
  passwordStdin?: boolean;
}

/** The edits a `change` command line asks for, in the order given by the flags below. */
export async function editsOf(options: EditFlags): Promise<Edit[]> {
  const edits: Edit[] = [];
  if (options.enable) edits.push({ edit: { case: "enable", value: {} } });
  if (options.disable) edits.push({ edit: { case: "disable", value: {} } });
  if (options.delete) edits.push({ edit: { case: "delete", value: {} } });
  if (options.extend) edits.push({ edit: { case: "extendExpiryDays", value: daysOf(options.extend) } });
  if (options.expire) edits.push({ edit: { case: "setExpiry", value: options.expire === "never" ? "" : options.expire } });
  if (options.renameGroup) {
    const m = /^(\d+):(\d+)$/.exec(options.renameGroup);
    if (!m) throw new ConnectError(`--rename-group ${options.renameGroup}: write from:to, e.g. 2:5`, Code.InvalidArgument);
    edits.push({ edit: { case: "renameGroup", value: { from: Number(m[1]), to: Number(m[2]) } } });
  }
  const keys: { set: Array<{ key: string; value: string }>; unset: string[] } = { set: [], unset: [...options.unset] };
  for (const assignment of options.set) {
    const eq = assignment.indexOf("=");
    if (eq <= 0) throw new ConnectError(`--set ${assignment}: write key=value, e.g. group=2`, Code.InvalidArgument);
    const key = assignment.slice(0, eq).toLowerCase();
    const value = assignment.slice(eq + 1);
    if (key === "group") edits.push({ edit: { case: "setGroups", value: { groups: value.split(",").filter(Boolean).map(Number) } } });
    else if (key === "caid") edits.push({ edit: { case: "setCaid", value } });
    else if (key === "ident") edits.push({ edit: { case: "setIdent", value } });
    else if (key === "description") edits.push({ edit: { case: "setDescription", value } });
    else if (key === "expdate") edits.push({ edit: { case: "setExpiry", value } });
    else keys.set.push({ key, value });
  }
  if (keys.set.length || keys.unset.length) edits.push({ edit: { case: "keys", value: keys } });
  if (options.passwordStdin) {
    const password = (await readStdin()).replace(/\r?\n$/, "");
    if (!password) throw new ConnectError("--password-stdin: nothing on stdin", Code.InvalidArgument);
    edits.push({ edit: { case: "setPassword", value: password } });
  }
  if (edits.length === 0)
    throw new ConnectError("say what to change: --disable, --enable, --delete, --extend 30d, --expire DATE, --set key=value …", Code.InvalidArgument);
  return edits;
}

/** `server/instance/user` → its account key. */
async function accountKey(api: Api, text: string, directory = instanceDirectory(api)) {
  const parts = /^([^/]+)\/([^/]+)\/(.+)$/.exec(text);
  if (!parts) throw new ConnectError(`"${text}": write server/instance/user`, Code.InvalidArgument);
  return { instanceId: await directory.instanceId(parts[1]!, parts[2]!), user: parts[3]! };
}

function changeSetJson(cs: ChangeSet) {
  return {
    id: cs.id || null,
    description: cs.description,
    summary: cs.summary,
    selection: cs.selection,
    createdBy: cs.createdBy,
    createdAt: isoOf(cs.createdAt),
    // A dry run has no status: it is a plan.
    status: cs.id ? lower(cs.status, ChangeSetStatus) : "planned",
    counts: cs.counts && {
      pending: cs.counts.pending,
      sent: cs.counts.sent,
      applied: cs.counts.applied,
      unchanged: cs.counts.unchanged,
      failed: cs.counts.failed,
    },
    instances: cs.instances.map((i) => ({
      server: i.serverName,
      instance: i.instanceName,
      commandId: i.commandId || null,
      applied: i.counts?.applied ?? 0,
      unchanged: i.counts?.unchanged ?? 0,
      failed: i.counts?.failed ?? 0,
      pending: (i.counts?.pending ?? 0) + (i.counts?.sent ?? 0),
      failureCode: i.failureCode || null,
      detail: i.detail || null,
    })),
    revertsChangeSetId: cs.revertsChangeSetId || null,
    retries: cs.retries,
  };
}

function printChangeSet(cs: ChangeSet): void {
  const j = changeSetJson(cs);
  const c = j.counts!;
  const lines = [
    `change set ${j.id ?? "(dry run)"}: ${j.summary} — ${j.status}`,
    `  ${j.selection ? `${j.selection}; ` : ""}applied ${c.applied}, unchanged ${c.unchanged}, failed ${c.failed}, pending ${c.pending + c.sent}`,
    ...j.instances.map(
      (i) =>
        `  ${`${i.server}/${i.instance}`.padEnd(24)} applied ${i.applied}, unchanged ${i.unchanged}, failed ${i.failed}, pending ${i.pending}${i.failureCode ? `  ${i.failureCode}: ${i.detail}` : ""}`,
    ),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

/** Follows a change set to its end (read to the stream's end, so nothing is left open); answers its last state. */
async function follow(api: Api, id: string, json: boolean): Promise<ChangeSet> {
  let last: ChangeSet | undefined;
  for await (const update of api.client(AccountService).watchChangeSet({ changeSetId: id }, { timeoutMs: 0 })) {
    last = update.changeSet;
    if (!json)
      for (const item of update.items)
        process.stdout.write(
          `  ${item.serverName}/${item.instanceName}/${item.user}: ${lower(item.status, ItemStatus)}${item.failureCode ? ` (${item.failureCode}: ${item.detail})` : ""}\n`,
        );
  }
  return last!;
}

/** Prints a change set (following it first with --follow); a followed change set that did not fully apply exits 1. */
async function finish(api: Api, cs: ChangeSet, options: { follow: boolean; json: boolean }): Promise<void> {
  let last = cs;
  if (options.follow && cs.id) {
    last = await follow(api, cs.id, options.json);
    if (last.status !== ChangeSetStatus.APPLIED) process.exitCode = 1;
  }
  if (options.json) return printJson({ changeSet: changeSetJson(last) });
  printChangeSet(last);
}

/** `accounts change`: one change set over the selected accounts. */
export async function accountsChangeCommand(options: {
  where: string[];
  account: string[];
  edits: EditFlags;
  description?: string;
  dryRun: boolean;
  follow: boolean;
  json: boolean;
}): Promise<void> {
  const api = await panelApi();
  const edits = await editsOf(options.edits);
  if (options.account.length > 0 && options.where.length > 0) throw new ConnectError("select by --account or by --where, not both", Code.InvalidArgument);
  if (options.account.length === 0 && options.where.length === 0) {
    throw new ConnectError("select the accounts: --where key=value … (e.g. --where state=expiring) or --account server/instance/user", Code.InvalidArgument);
  }
  const directory = instanceDirectory(api);
  const selection =
    options.account.length > 0
      ? { selection: { case: "keys" as const, value: { keys: await Promise.all(options.account.map((a) => accountKey(api, a, directory))) } } }
      : { selection: { case: "filter" as const, value: await filterOf(api, options.where, directory) } };
  const res = await api.client(AccountService).createChangeSet({ description: options.description ?? "", selection, edits, dryRun: options.dryRun });
  if (options.dryRun && !options.json) {
    printChangeSet(res.changeSet!);
    for (const p of res.preview) {
      const changes = p.changes.map((c) => `${c.field}: ${c.before || "∅"} → ${c.after || "∅"}`).join(", ");
      process.stdout.write(`  ${p.serverName || p.serverId}/${p.instanceName}/${p.user}: ${changes || "unchanged"}\n`);
    }
    return;
  }
  await finish(api, res.changeSet!, options);
}

/** `accounts create`: one account on each named instance, in one change set. */
export async function accountsCreateCommand(options: {
  on: string[];
  user: string;
  passwordStdin: boolean;
  groups?: string;
  expire?: string;
  caid?: string;
  ident?: string;
  description?: string;
  disabled: boolean;
  follow: boolean;
  json: boolean;
}): Promise<void> {
  const api = await panelApi();
  const directory = instanceDirectory(api);
  const instanceIds = [];
  for (const target of options.on) {
    const slash = target.indexOf("/");
    if (slash < 0) throw new ConnectError(`--on ${target}: write server/instance`, Code.InvalidArgument);
    instanceIds.push(await directory.instanceId(target.slice(0, slash), target.slice(slash + 1)));
  }
  const password = options.passwordStdin ? (await readStdin()).replace(/\r?\n$/, "") : "";
  const { changeSet } = await api.client(AccountService).createChangeSet({
    creations: [
      {
        instanceIds,
        user: options.user,
        fields: {
          password,
          disabled: options.disabled,
          groups: (options.groups ?? "").split(",").filter(Boolean).map(Number),
          caid: options.caid ?? "",
          ident: options.ident ?? "",
          expiryDate: options.expire ?? "",
          description: options.description ?? "",
        },
      },
    ],
  });
  await finish(api, changeSet!, options);
}

/** `accounts show <change set>`. */
export async function accountsShowCommand(id: string, options: { follow: boolean; json: boolean }): Promise<void> {
  const api = await panelApi();
  await finish(api, (await api.client(AccountService).getChangeSet({ changeSetId: id })).changeSet!, options);
}

/** `accounts change-sets`: the latest change sets. */
export async function accountsChangeSetsCommand(options: { json: boolean }): Promise<void> {
  const { changeSets } = await (await panelApi()).client(AccountService).listChangeSets({ pageSize: 50 });
  if (options.json) return printJson({ changeSets: changeSets.map(changeSetJson) });
  const lines = changeSets.map((cs) => {
    const j = changeSetJson(cs);
    return `${j.id}  ${j.createdAt}  ${j.status.padEnd(16)} ${j.summary}  (${j.counts!.applied} applied, ${j.counts!.failed} failed) by ${j.createdBy}`;
  });
  process.stdout.write(lines.length ? `${lines.join("\n")}\n` : "no change sets\n");
}

/** `accounts retry <change set>`: the failed accounts only, again. */
export async function accountsRetryCommand(id: string, options: { follow: boolean; json: boolean }): Promise<void> {
  const api = await panelApi();
  await finish(api, (await api.client(AccountService).retryChangeSet({ changeSetId: id })).changeSet!, options);
}

/** `accounts revert <change set>`: the inverse change set, sent. */
export async function accountsRevertCommand(id: string, options: { follow: boolean; json: boolean }): Promise<void> {
  const api = await panelApi();
  await finish(api, (await api.client(AccountService).revertChangeSet({ changeSetId: id })).changeSet!, options);
}

/** `accounts history`: the changes of one account or one change set, newest first. */
export async function accountsHistoryCommand(options: { account?: string; changeSet?: string; json: boolean }): Promise<void> {
  const api = await panelApi();
  if (Boolean(options.account) === Boolean(options.changeSet))
    throw new ConnectError("name one: --account server/instance/user or --change-set ID", Code.InvalidArgument);
  const of = options.account
    ? { case: "account" as const, value: await accountKey(api, options.account) }
    : { case: "changeSetId" as const, value: options.changeSet! };
  const { entries } = await api.client(AccountService).listHistory({ of, pageSize: 1000 });
  const rows = entries.map((e) => ({
    at: isoOf(e.at),
    server: e.serverName,
    instance: e.instanceName,
    user: e.user,
    source: e.source === ChangeSource.OUTSIDE ? "outside the panel" : "panel",
    actor: e.actor,
    changeSetId: e.changeSetId || null,
    operation: lower(e.operation, ItemOperation),
    changes: e.changes.map((c) => ({ field: c.field, before: c.before, after: c.after })),
  }));
  if (options.json) return printJson({ entries: rows });
  const lines = rows.map(
    (r) =>
      `${r.at}  ${r.server}/${r.instance}/${r.user}  ${r.operation} by ${r.actor}${r.changeSetId ? ` (change set ${r.changeSetId})` : ""}\n${r.changes.map((c) => `    ${c.field}: ${c.before || "∅"} → ${c.after || "∅"}`).join("\n")}`,
  );
  process.stdout.write(lines.length ? `${lines.join("\n")}\n` : "no changes recorded\n");
}

/** `accounts export`: the filtered table as CSV on stdout (no passwords). */
export async function accountsExportCommand(options: { where: string[] }): Promise<void> {
  const api = await panelApi();
  const filter = await filterOf(api, options.where);
  for await (const part of api.client(AccountService).exportAccounts({ filter })) process.stdout.write(part.chunk);
}

/** `accounts import <file>`: new accounts from CSV, previewed with --dry-run. */
export async function accountsImportCommand(
  file: string,
  options: { dryRun: boolean; skipInvalid: boolean; description?: string; follow: boolean; json: boolean },
): Promise<void> {
  const api = await panelApi();
  const csv =
    file === "-"
      ? await readStdin()
      : await readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
          throw new ConnectError(`${file} cannot be read (${err.code ?? err.message})`, Code.InvalidArgument);
        });
  const res = await api
    .client(AccountService)
    .importAccounts({ csv, dryRun: options.dryRun, skipInvalid: options.skipInvalid, description: options.description ?? "" });
  if (options.json && (options.dryRun || !res.changeSet)) {
    return printJson({
      valid: res.valid,
      invalid: res.invalid,
      rows: res.rows.map((r) => ({ line: r.line, server: r.serverName, instance: r.instanceName, user: r.user, error: r.error || null })),
    });
  }
  if (!options.json) {
    for (const r of res.rows) process.stdout.write(`line ${r.line}: ${r.serverName}/${r.instanceName}/${r.user}: ${r.error || "ok"}\n`);
    process.stdout.write(`${res.valid} valid, ${res.invalid} invalid${options.dryRun ? " (dry run: nothing created)" : ""}\n`);
  }
  if (res.changeSet) await finish(api, res.changeSet, options);
}

/** `accounts password <server/instance/user>`: one password (audited). */
export async function accountsPasswordCommand(account: string, options: { json: boolean }): Promise<void> {
  const api = await panelApi();
  const key = await accountKey(api, account);
  const [row] = (await api.client(AccountService).listAccounts({ filter: { instanceIds: [key.instanceId], users: [key.user] } })).accounts;
  if (!row) throw new ConnectError(`no account "${account}"`, Code.NotFound);
  const { password } = await api.client(AccountService).revealPassword({ accountId: row.id });
  if (options.json) return printJson({ password });
  process.stdout.write(`${password}\n`);
}

/** `accounts accept-drift <server/instance>`: the hand edits are accepted; the marks clear. */
export async function accountsAcceptDriftCommand(target: string, options: { json: boolean }): Promise<void> {
  const api = await panelApi();
  const slash = target.indexOf("/");
  if (slash < 0) throw new ConnectError(`"${target}": write server/instance`, Code.InvalidArgument);
  const instanceId = await instanceDirectory(api).instanceId(target.slice(0, slash), target.slice(slash + 1));
  const { cleared } = await api.client(AccountService).acknowledgeDrift({ instanceId });
  if (options.json) return printJson({ cleared });
  process.stdout.write(`${cleared} drifted account${cleared === 1 ? "" : "s"} accepted on ${target}\n`);
}
