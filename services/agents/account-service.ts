import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { setTimeout as sleep } from "node:timers/promises";
import type { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import {
  AccountSort,
  AccountState,
  ChangeSetStatus,
  ChangeSource,
  ItemOperation,
  ItemStatus,
  type AccountEdit,
  type AccountFilter,
  type AccountSchema,
  type AccountService,
  type ChangeSetItemSchema,
  type ChangeSetSchema,
  type CreateChangeSetRequest,
} from "../../gen/myosicam/panel/v1/account_pb.js";
import type { Knex } from "../lib/db.js";
import { badPageToken, idCursor } from "../lib/paging.js";
import { isScoped, principalOf, scopeIncludes, writeDb, type Principal } from "../lib/principal.js";
import { timestampOf } from "../lib/timestamps.js";
import { accountsCsv, parseAccountsCsv } from "./account-csv.js";
import {
  addChange,
  applyEdits,
  checkEdits,
  creationEntries,
  describeEdits,
  type Edit,
  entriesOfFields,
  type PlannedItem,
  type PlanProblem,
  plannedChanges,
  planRefusal,
  updateChange,
} from "./account-plans.js";
import {
  type AccountFilterInput,
  type AccountRow,
  type AccountSortName,
  type AccountStateName,
  acknowledgeDrift,
  encodeAccountCursor,
  localDate,
  selectAccountById,
  selectAccountPage,
  selectAccountsByKey,
  selectExistingUsers,
  selectInstancesByName,
  selectInstanceTargets,
  selectMatchingAccounts,
} from "./account-store.js";
import { whereInScope } from "./fleet-store.js";
import {
  type ChangeSetRow,
  itemStatusSql,
  type InstanceProgress,
  type ItemRow,
  retryFailedItems,
  selectAppliedHistory,
  selectInstanceProgress,
  selectItems,
  storeChangeSet,
  type TargetedItem,
} from "./change-sets.js";

/** Most accounts one change set may touch (a larger selection is refused: narrow the filter). */
export const maxChangeSetAccounts = 100_000;
/** How often WatchChangeSet looks at its change set again. */
const watchIntervalMs = 250;

const states: Record<AccountStateName, AccountState> = {
  active: AccountState.ACTIVE,
  disabled: AccountState.DISABLED,
  expired: AccountState.EXPIRED,
  expiring: AccountState.EXPIRING,
};
const stateNames = new Map<AccountState, AccountStateName>(Object.entries(states).map(([n, v]) => [v, n as AccountStateName]));
const sorts: Record<AccountSort, AccountSortName> = {
  [AccountSort.UNSPECIFIED]: "server",
  [AccountSort.SERVER]: "server",
  [AccountSort.USER]: "user",
  [AccountSort.EXPIRY]: "expiry",
  [AccountSort.CHANGED]: "changed",
};
const itemStatuses = {
  pending: ItemStatus.PENDING,
  sent: ItemStatus.SENT,
  applied: ItemStatus.APPLIED,
  unchanged: ItemStatus.UNCHANGED,
  failed: ItemStatus.FAILED,
} as const;
const itemStatusNames = new Map<ItemStatus, keyof typeof itemStatuses>(Object.entries(itemStatuses).map(([n, v]) => [v, n as keyof typeof itemStatuses]));
const operations = { create: ItemOperation.CREATE, update: ItemOperation.UPDATE, delete: ItemOperation.DELETE } as const;

/** The filter of a request as the store takes it. */
export function filterOf(f: AccountFilter | undefined): AccountFilterInput {
  if (!f) return {};
  return {
    serverIds: f.serverIds,
    instanceIds: f.instanceIds,
    users: f.users,
    states: f.states.map((s) => stateNames.get(s)!),
    group: f.group || undefined,
    caid: f.caid || undefined,
    ident: f.ident || undefined,
    query: f.query || undefined,
    description: f.description || undefined,
    expiresBefore: f.expiresBefore || undefined,
    expiresAfter: f.expiresAfter || undefined,
    changedBy: f.changedBy || undefined,
    driftedOnly: f.driftedOnly,
    expiringWithinDays: f.expiringWithinDays || undefined,
  };
}

/** The filter in words, as a change set keeps its selection. */
function describeFilter(f: AccountFilter | undefined): string {
  if (!f) return "every account";
  const parts: string[] = [];
  if (f.serverIds.length) parts.push(`servers ${f.serverIds.join(",")}`);
  if (f.instanceIds.length) parts.push(`instances ${f.instanceIds.join(",")}`);
  if (f.users.length) parts.push(`users ${f.users.slice(0, 10).join(",")}${f.users.length > 10 ? ` (+${f.users.length - 10})` : ""}`);
  if (f.states.length) parts.push(`state ${f.states.map((s) => stateNames.get(s)).join("|")}`);
  if (f.group) parts.push(`group ${f.group}`);
  if (f.caid) parts.push(`caid ${f.caid}`);
  if (f.ident) parts.push(`ident ~${f.ident}`);
  if (f.query) parts.push(`text ~${f.query}`);
  if (f.description) parts.push(`description ~${f.description}`);
  if (f.expiresBefore) parts.push(`expires ≤ ${f.expiresBefore}`);
  if (f.expiresAfter) parts.push(`expires ≥ ${f.expiresAfter}`);
  if (f.changedBy) parts.push(`changed by ${f.changedBy}`);
  if (f.driftedOnly) parts.push("drifted");
  return parts.length ? `every account with ${parts.join(", ")}` : "every account";
}

/** An account row as the contract's message. */
export function accountMessage(r: AccountRow): MessageInitShape<typeof AccountSchema> {
  return {
    id: r.id,
    serverId: r.server_id,
    serverName: r.server_name,
    instanceId: r.instance_id,
    instanceName: r.instance_name,
    user: r.username,
    enabled: r.enabled,
    state: states[r.state],
    groups: r.groups,
    caid: r.caid,
    ident: r.ident,
    expiryDate: r.expiry_date ?? "",
    unreadableExpiry: r.unreadable_expiry,
    description: r.description,
    extra: r.extra.map((x) => ({ key: x.key, value: x.value })),
    hasPassword: r.password !== null,
    changedAt: timestampOf(r.changed_at),
    changedBy: r.changed_by,
    changeSetId: r.change_set_id ?? "",
    drifted: r.drifted,
  };
}

/** The current keys of a stored account, as the plan edits them. */
const entriesOfRow = (r: AccountRow) =>
  entriesOfFields({
    enabled: r.enabled,
    groups: r.groups,
    caid: r.caid,
    ident: r.ident,
    expiryDate: r.expiry_date ?? "",
    unreadableExpiry: r.unreadable_expiry,
    description: r.description,
    extra: r.extra,
  });

/** The edits of a request in the planner's terms. */
function editsOf(edits: readonly AccountEdit[]): Edit[] {
  return edits.map((e): Edit => {
    const v = e.edit;
    switch (v.case) {
      case "enable":
      case "disable":
      case "delete":
        return { kind: v.case };
      case "extendExpiryDays":
        return { kind: "extendExpiryDays", days: v.value };
      case "setExpiry":
        return { kind: "setExpiry", date: v.value };
      case "setGroups":
        return { kind: "setGroups", groups: v.value.groups };
      case "renameGroup":
        return { kind: "renameGroup", from: v.value.from, to: v.value.to };
      case "setCaid":
        return { kind: "setCaid", caid: v.value };
      case "setIdent":
        return { kind: "setIdent", ident: v.value };
      case "setDescription":
        return { kind: "setDescription", description: v.value };
      case "setPassword":
        return { kind: "setPassword", password: v.value };
      case "keys":
        return { kind: "keys", set: v.value.set, unset: v.value.unset };
      default:
        throw new ConnectError("edits: each edit names what it does", Code.InvalidArgument);
    }
  });
}

/** The edits as stored with the change set (no password). */
const storedEdits = (edits: readonly Edit[]) => edits.map((e) => (e.kind === "setPassword" ? { kind: e.kind } : e));

const accountName = (t: { server_name: string; name: string }, user: string) => `account "${user}" on ${t.server_name}/${t.name}`;

/** A request's creations and edits planned against the accounts as the panel sees them; InvalidArgument on any problem. */
async function planRequest(
  db: Knex,
  principal: Principal,
  req: CreateChangeSetRequest,
  today: string,
): Promise<{ items: TargetedItem[]; selection: string; edits: Edit[] }> {
  const edits = editsOf(req.edits);
  const problems: PlanProblem[] = checkEdits(edits);
  if (edits.length > 0 && !req.selection)
    problems.push({ account: "request", field: "selection", message: "edits need a selection (account keys or a filter)" });
  if (edits.length === 0 && req.selection) problems.push({ account: "request", field: "edits", message: "a selection needs at least one edit" });
  if (edits.length === 0 && req.creations.length === 0)
    problems.push({ account: "request", field: "creations", message: "nothing to do: give creations, or a selection with edits" });
  if (problems.length > 0) throw planRefusal(problems);
  const items: TargetedItem[] = [];

  // Creations: each (instance, user) once, not existing yet, fields as OScam reads them.
  const instanceIds = [...new Set(req.creations.flatMap((c) => c.instanceIds))];
  const targets = new Map((await selectInstanceTargets(db, principal.scope, instanceIds)).map((t) => [t.id, t]));
  const unknown = instanceIds.filter((id) => !targets.has(id));
  if (unknown.length > 0) throw new ConnectError(`no instance ${unknown.slice(0, 10).join(", ")}; see InstanceService.ListInstances`, Code.NotFound);
  const pairs = req.creations.flatMap((c) => c.instanceIds.map((instanceId) => ({ instanceId, user: c.user })));
  const existing = await selectExistingUsers(db, pairs);
  const seen = new Set<string>();
  for (const c of req.creations) {
    for (const instanceId of c.instanceIds) {
      const target = targets.get(instanceId)!;
      const name = accountName(target, c.user);
      const key = `${instanceId}\u0000${c.user}`;
      if (seen.has(key)) problems.push({ account: name, field: "user", message: "is created twice in this change set" });
      else if (existing.has(key)) problems.push({ account: name, field: "user", message: "exists already on that instance" });
      seen.add(key);
      const fields = c.fields ?? { password: "", disabled: false, groups: [], caid: "", ident: "", expiryDate: "", description: "", extra: [] };
      const created = creationEntries(name, fields, c.user);
      problems.push(...created.problems);
      items.push({
        instanceId,
        serverId: target.server_id,
        serverName: target.server_name,
        instanceName: target.name,
        user: c.user,
        operation: "create",
        change: addChange(c.user, created.entries, fields.password),
        planned: plannedChanges(null, created.entries, fields.password !== ""),
      });
    }
  }

  // Edits of a selection, resolved now and stored with the change set.
  let selection = "";
  let selectionWords = "the accounts named";
  if (req.selection && edits.length > 0) {
    let rows: AccountRow[];
    if (req.selection.selection.case === "keys") {
      const keys = req.selection.selection.value.keys.map((k) => ({ instanceId: k.instanceId, user: k.user }));
      rows = await selectAccountsByKey(db, principal.scope, keys, today);
      const found = new Set(rows.map((r) => `${r.instance_id}\u0000${r.username}`));
      const missing = keys.filter((k) => !found.has(`${k.instanceId}\u0000${k.user}`));
      if (missing.length > 0) {
        throw new ConnectError(
          `no account ${missing
            .slice(0, 10)
            .map((k) => `"${k.user}" on instance ${k.instanceId}`)
            .join(", ")}${missing.length > 10 ? ` and ${missing.length - 10} more` : ""}; see AccountService.ListAccounts`,
          Code.NotFound,
        );
      }
      selection = `${keys.length} account${keys.length === 1 ? "" : "s"} by name`;
    } else {
      const filter = req.selection.selection.value as AccountFilter;
      rows = await selectMatchingAccounts(db, principal.scope, filterOf(filter), today, maxChangeSetAccounts + 1);
      if (rows.length > maxChangeSetAccounts) {
        throw new ConnectError(`the filter matches more than ${maxChangeSetAccounts} accounts; narrow it and split the change`, Code.InvalidArgument);
      }
      selectionWords = describeFilter(filter);
      selection = `${selectionWords} (${rows.length} at creation)`;
    }
    const deleting = edits.some((e) => e.kind === "delete");
    for (const r of rows) {
      const before = entriesOfRow(r);
      if (deleting) {
        items.push({
          instanceId: r.instance_id,
          serverId: r.server_id,
          serverName: r.server_name,
          instanceName: r.instance_name,
          user: r.username,
          operation: "delete",
          change: { operation: "ACCOUNT_OPERATION_DELETE", user: r.username },
          planned: plannedChanges(before, null, r.password !== null),
        });
        continue;
      }
      const { entries: after, password } = applyEdits(before, edits, today);
      const change = updateChange(r.username, before, after, password);
      items.push({
        instanceId: r.instance_id,
        serverId: r.server_id,
        serverName: r.server_name,
        instanceName: r.instance_name,
        user: r.username,
        operation: "update",
        ...(change ? { change } : {}),
        planned: plannedChanges(before, after, password !== undefined),
      });
    }
  }
  if (problems.length > 0) throw planRefusal(problems);
  if (items.length === 0) throw new ConnectError(`nothing was stored or sent: the selection (${selectionWords}) matches no account`, Code.InvalidArgument);
  if (items.length > maxChangeSetAccounts)
    throw new ConnectError(`a change set touches at most ${maxChangeSetAccounts} accounts; split the change`, Code.InvalidArgument);
  return { items, selection, edits };
}

/** Item status counts of planned items (a preview: nothing sent). */
function plannedCounts(items: readonly PlannedItem[]) {
  const unchanged = items.filter((i) => !i.change).length;
  return { pending: items.length - unchanged, sent: 0, applied: 0, unchanged, failed: 0 };
}

const itemMessage = (r: ItemRow): MessageInitShape<typeof ChangeSetItemSchema> => ({
  id: r.id,
  serverId: r.server_id,
  serverName: r.server_name,
  instanceId: r.instance_id,
  instanceName: r.instance_name,
  user: r.username,
  operation: operations[r.operation],
  status: itemStatuses[r.status],
  failureCode: r.failure_code,
  detail: r.detail,
  changes: r.planned,
});

type Counts = { pending: number; sent: number; applied: number; unchanged: number; failed: number };

function statusOf(c: Counts): ChangeSetStatus {
  if (c.pending + c.sent > 0) return ChangeSetStatus.IN_PROGRESS;
  if (c.failed === 0) return ChangeSetStatus.APPLIED;
  return c.applied + c.unchanged > 0 ? ChangeSetStatus.PARTIALLY_FAILED : ChangeSetStatus.FAILED;
}

function changeSetMessage(cs: ChangeSetRow, progress: readonly InstanceProgress[]): MessageInitShape<typeof ChangeSetSchema> {
  const counts: Counts = { pending: 0, sent: 0, applied: 0, unchanged: 0, failed: 0 };
  for (const p of progress) for (const k of Object.keys(counts) as Array<keyof Counts>) counts[k] += p[k];
  return {
    id: cs.id,
    description: cs.description,
    summary: cs.summary,
    selection: cs.selection,
    createdBy: cs.created_by,
    createdAt: timestampOf(cs.created_at),
    status: statusOf(counts),
    counts,
    instances: progress.map((p) => ({
      serverId: p.server_id,
      serverName: p.server_name,
      instanceId: p.instance_id,
      instanceName: p.instance_name,
      commandId: p.command_id ?? "",
      counts: { pending: p.pending, sent: p.sent, applied: p.applied, unchanged: p.unchanged, failed: p.failed },
      failureCode: p.failure_code,
      detail: p.detail,
    })),
    revertsChangeSetId: cs.reverts_change_set_id ?? "",
    retries: cs.retries,
  };
}

/** Instances of a change set in the caller's scope; NotFound when the change set has none in it. */
async function visibleChangeSet(db: Knex, principal: Principal, id: string): Promise<{ cs: ChangeSetRow; instanceIds: string[] }> {
  const cs = (await db("change_sets").where({ id }).first()) as ChangeSetRow | undefined;
  const all = cs
    ? await db("change_set_items as it")
        .join("instances as i", "i.id", "it.instance_id")
        .join("servers as s", "s.id", "i.server_id")
        .where("it.change_set_id", id)
        .distinct("it.instance_id", "s.id as server_id", "s.tags")
    : [];
  const visible = all.filter((r: { server_id: string; tags: string[] }) => scopeIncludes(principal.scope, { id: r.server_id, tags: r.tags }));
  // A scoped caller sees a change set only when all of it is in scope (it may not learn of other servers).
  if (!cs || (isScoped(principal.scope) && (visible.length === 0 || visible.length < all.length))) throw new ConnectError(`no change set ${id}`, Code.NotFound);
  return { cs, instanceIds: visible.map((r: { instance_id: string }) => r.instance_id) };
}

async function loadChangeSet(db: Knex, principal: Principal, id: string) {
  const { cs, instanceIds } = await visibleChangeSet(db, principal, id);
  return changeSetMessage(cs, await selectInstanceProgress(db, id, instanceIds));
}

/** A change set already found visible, as it is now (its visible instances given). */
async function reloadChangeSet(db: Knex, id: string, instanceIds: readonly string[]) {
  const cs = (await db("change_sets").where({ id }).first()) as ChangeSetRow;
  return changeSetMessage(cs, await selectInstanceProgress(db, id, instanceIds));
}

/** Handlers of `myosicam.panel.v1.AccountService`. */
export function createAccountService(deps: {
  db: Knex;
  crypto: Client<typeof CryptoService>;
  /** Throws FailedPrecondition when the license does not allow changes now. */
  requireLicense: () => Promise<void>;
}): ServiceImpl<typeof AccountService> {
  const { db, crypto } = deps;

  /** Plans and (unless dry_run) stores and sends a change set in the mutation's transaction. */
  async function createChangeSet(ctx: HandlerContext, req: CreateChangeSetRequest, revertsChangeSetId?: string) {
    const principal = principalOf(ctx);
    const today = localDate();
    const trx = writeDb(ctx, db);
    const { items, selection, edits } = await planRequest(trx, principal, req, today);
    const summary = describeEdits(edits, req.creations.length);
    if (req.dryRun) {
      return {
        changeSet: { summary, selection, createdBy: principal.name, counts: plannedCounts(items) },
        preview: items.slice(0, 1000).map((i) => ({
          instanceId: i.instanceId,
          instanceName: i.instanceName,
          serverId: i.serverId,
          serverName: i.serverName ?? "",
          user: i.user,
          operation: operations[i.operation],
          status: i.change ? ItemStatus.PENDING : ItemStatus.UNCHANGED,
          changes: i.planned,
        })),
      };
    }
    await deps.requireLicense();
    const { id } = await storeChangeSet(trx, crypto, {
      description: req.description,
      summary,
      selection,
      spec: { edits: storedEdits(edits), creations: req.creations.map((c) => ({ user: c.user, instanceIds: c.instanceIds })) } as never,
      createdBy: principal.name,
      revertsChangeSetId,
      ttlSeconds: req.ttlSeconds || undefined,
      items,
    });
    writeDb(ctx, db, `change_set:${id}`);
    return { changeSet: await loadChangeSet(trx, principal, id), preview: [] };
  }

  return {
    async listAccounts(req, ctx) {
      const principal = principalOf(ctx);
      const size = req.pageSize || 50;
      const { rows, total } = await selectAccountPage(db, principal.scope, filterOf(req.filter), {
        sort: sorts[req.sort],
        descending: req.descending,
        limit: size + 1,
        pageToken: req.pageToken,
        today: localDate(),
      });
      const page = rows.slice(0, size);
      return {
        accounts: page.map(accountMessage),
        nextPageToken: rows.length > size ? encodeAccountCursor(page.at(-1)!.cursor!) : "",
        total,
      };
    },

    async revealPassword(req, ctx) {
      const principal = principalOf(ctx);
      const row = await selectAccountById(writeDb(ctx, db, `account:${req.accountId}`), principal.scope, req.accountId, localDate());
      if (!row) throw new ConnectError(`no account ${req.accountId}`, Code.NotFound);
      if (row.password === null) return { password: "" };
      const { plaintext } = await crypto.decrypt({ envelope: row.password, context: { table: "accounts", column: "password", rowId: row.id } });
      return { password: Buffer.from(plaintext).toString("utf8") };
    },

    async createChangeSet(req, ctx) {
      return createChangeSet(ctx, req);
    },

    async getChangeSet(req, ctx) {
      return { changeSet: await loadChangeSet(db, principalOf(ctx), req.changeSetId) };
    },

    async listChangeSets(req, ctx) {
      const principal = principalOf(ctx);
      const size = req.pageSize || 50;
      let after: { createdAt: string; id: string } | undefined;
      if (req.pageToken) {
        try {
          after = JSON.parse(Buffer.from(req.pageToken, "base64url").toString("utf8"));
          if (typeof after?.createdAt !== "string" || typeof after.id !== "string" || !/^[0-9a-f-]{36}$/.test(after.id)) throw new Error("bad");
        } catch {
          throw badPageToken();
        }
      }
      const query = db("change_sets as cs")
        .select("cs.*", db.raw("cs.created_at::text as cursor_at"))
        .orderBy([
          { column: "cs.created_at", order: "desc" },
          { column: "cs.id", order: "desc" },
        ])
        .limit(size + 1);
      if (after) query.whereRaw("(cs.created_at, cs.id) < (?::timestamptz, ?::uuid)", [after.createdAt, after.id]);
      if (isScoped(principal.scope)) {
        // Only change sets entirely within the caller's servers.
        query.whereNotExists(function () {
          this.select(db.raw("1"))
            .from("change_set_items as it")
            .join("instances as i", "i.id", "it.instance_id")
            .join("servers as s", "s.id", "i.server_id")
            .whereRaw("it.change_set_id = cs.id")
            .whereNot((q) => {
              whereInScope(q, principal.scope, "s");
            });
        });
      }
      const rows = (await query) as Array<ChangeSetRow & { cursor_at: string }>;
      const page = rows.slice(0, size);
      const changeSets = [];
      for (const cs of page) changeSets.push(changeSetMessage(cs, await selectInstanceProgress(db, cs.id)));
      const last = page.at(-1);
      return {
        changeSets,
        nextPageToken: rows.length > size && last ? Buffer.from(JSON.stringify({ createdAt: last.cursor_at, id: last.id })).toString("base64url") : "",
      };
    },

    async listChangeSetItems(req, ctx) {
      const { instanceIds } = await visibleChangeSet(db, principalOf(ctx), req.changeSetId);
      const size = req.pageSize || 100;
      const after = idCursor(req.pageToken);
      const query = selectItems(db, req.changeSetId)
        .whereRaw("it.instance_id = any(?::uuid[])", [instanceIds])
        .orderBy("it.id")
        .limit(size + 1);
      if (after) query.where("it.id", ">", after);
      if (req.statuses.length > 0) query.whereRaw(`(${itemStatusSql}) = any(?::text[])`, [req.statuses.map((s) => itemStatusNames.get(s)!)]);
      const rows = (await query) as ItemRow[];
      const page = rows.slice(0, size);
      return { items: page.map(itemMessage), nextPageToken: rows.length > size ? page.at(-1)!.id : "" };
    },

    async *watchChangeSet(req, ctx) {
      const principal = principalOf(ctx);
      const { instanceIds } = await visibleChangeSet(db, principal, req.changeSetId);
      const seen = new Map<string, string>();
      let last = "";
      let first = true;
      for (;;) {
        const changeSet = await reloadChangeSet(db, req.changeSetId, instanceIds);
        const rows = (await selectItems(db, req.changeSetId).whereRaw("it.instance_id = any(?::uuid[])", [instanceIds])) as ItemRow[];
        const changed = rows.filter((r) => seen.get(r.id) !== r.status);
        for (const r of rows) seen.set(r.id, r.status);
        const done = changeSet.status !== ChangeSetStatus.IN_PROGRESS;
        const fingerprint = JSON.stringify(changeSet.counts) + JSON.stringify(changeSet.instances);
        if (first || fingerprint !== last || changed.length > 0 || done) {
          const items = first ? [] : changed.map(itemMessage);
          for (let i = 0; i < Math.max(1, items.length); i += 1000) {
            yield { changeSet, items: items.slice(i, i + 1000), done: done && i + 1000 >= items.length };
          }
        }
        if (done) return;
        first = false;
        last = fingerprint;
        await sleep(watchIntervalMs, undefined, { signal: ctx.signal });
      }
    },

    async retryChangeSet(req, ctx) {
      const principal = principalOf(ctx);
      await visibleChangeSet(db, principal, req.changeSetId);
      await deps.requireLicense();
      const trx = writeDb(ctx, db, `change_set:${req.changeSetId}`);
      const sent = await retryFailedItems(trx, crypto, req.changeSetId, principal.name);
      if (sent === 0) throw new ConnectError(`change set ${req.changeSetId} has no failed account to send again`, Code.FailedPrecondition);
      return { changeSet: await loadChangeSet(trx, principal, req.changeSetId) };
    },

    async revertChangeSet(req, ctx) {
      const principal = principalOf(ctx);
      const { cs } = await visibleChangeSet(db, principal, req.changeSetId);
      const trx = writeDb(ctx, db, `change_set:${req.changeSetId}`);
      const applied = await selectAppliedHistory(trx, crypto, req.changeSetId);
      if (applied.length === 0) throw new ConnectError(`change set ${req.changeSetId} has no applied change to revert`, Code.FailedPrecondition);
      const targets = new Map((await selectInstanceTargets(trx, principal.scope, [...new Set(applied.map((h) => h.instance_id))])).map((t) => [t.id, t]));
      // Newest first, so an account changed twice ends as it was before the first change.
      const items: TargetedItem[] = [];
      for (const h of [...applied].reverse()) {
        const target = targets.get(h.instance_id);
        if (!target) throw new ConnectError(`instance ${h.instance_id} of change set ${req.changeSetId} is gone; nothing was sent`, Code.FailedPrecondition);
        const base = { instanceId: h.instance_id, serverId: target.server_id, instanceName: target.name, user: h.username };
        if (h.operation === "create") {
          items.push({
            ...base,
            operation: "delete",
            change: { operation: "ACCOUNT_OPERATION_DELETE", user: h.username },
            planned: plannedChanges(h.after, null, h.pwd_changed),
          });
        } else if (h.operation === "delete") {
          const { user: _user, ...entries } = h.before ?? {};
          items.push({
            ...base,
            operation: "create",
            change: addChange(h.username, entries, h.password ?? "", h.followed_by || undefined),
            planned: plannedChanges(null, entries, h.password !== undefined),
          });
        } else {
          const before = h.after ?? {};
          const after = h.before ?? {};
          const change = updateChange(h.username, before, after, h.pwd_changed ? (h.password ?? "") : undefined);
          items.push({ ...base, operation: "update", ...(change ? { change } : {}), planned: plannedChanges(before, after, h.pwd_changed) });
        }
      }
      await deps.requireLicense();
      const { id } = await storeChangeSet(trx, crypto, {
        description: req.description || `revert of ${cs.summary}${cs.description ? ` (${cs.description})` : ""}`,
        summary: `revert ${cs.summary}`,
        selection: `the ${applied.length} account${applied.length === 1 ? "" : "s"} change set ${cs.id} changed`,
        spec: { revert: cs.id } as never,
        createdBy: principal.name,
        revertsChangeSetId: cs.id,
        items,
      });
      writeDb(ctx, db, `change_set:${id}`);
      return { changeSet: await loadChangeSet(trx, principal, id) };
    },

    async listHistory(req, ctx) {
      const principal = principalOf(ctx);
      const size = req.pageSize || 100;
      const before = idCursor(req.pageToken);
      const query = db("account_history as h")
        .join("instances as i", "i.id", "h.instance_id")
        .join("servers as s", "s.id", "i.server_id")
        .select("h.*", db.raw("h.id::text as id"), "i.name as instance_name", "s.id as server_id", "s.name as server_name")
        .orderBy("h.id", "desc")
        .limit(size + 1);
      whereInScope(query, principal.scope, "s");
      if (req.of.case === "account") query.where({ "h.instance_id": req.of.value.instanceId, "h.username": req.of.value.user });
      else if (req.of.case === "changeSetId") {
        await visibleChangeSet(db, principal, req.of.value);
        query.where("h.change_set_id", req.of.value);
      }
      if (before) query.where("h.id", "<", before);
      const rows = await query;
      const page = rows.slice(0, size);
      return {
        entries: page.map((h: Record<string, unknown>) => ({
          id: h.id as string,
          at: timestampOf(h.at as Date),
          serverId: h.server_id as string,
          serverName: h.server_name as string,
          instanceId: h.instance_id as string,
          instanceName: h.instance_name as string,
          user: h.username as string,
          source: h.source === "outside" ? ChangeSource.OUTSIDE : ChangeSource.PANEL,
          actor: h.actor as string,
          changeSetId: (h.change_set_id as string | null) ?? "",
          operation: operations[h.operation as keyof typeof operations],
          changes: plannedChanges(h.before as Record<string, string> | null, h.after as Record<string, string> | null, h.pwd_changed as boolean),
        })),
        nextPageToken: rows.length > size ? (page.at(-1)!.id as string) : "",
      };
    },

    async acknowledgeDrift(req, ctx) {
      const principal = principalOf(ctx);
      const trx = writeDb(ctx, db, `instance:${req.instanceId}`);
      const [target] = await selectInstanceTargets(trx, principal.scope, [req.instanceId]);
      if (!target) throw new ConnectError(`no instance ${req.instanceId}`, Code.NotFound);
      return { cleared: await acknowledgeDrift(trx, req.instanceId) };
    },

    async *exportAccounts(req, ctx) {
      const principal = principalOf(ctx);
      const today = localDate();
      let token = "";
      let header = true;
      do {
        const { rows } = await selectAccountPage(db, principal.scope, filterOf(req.filter), {
          sort: sorts[req.sort],
          descending: req.descending,
          limit: 1000,
          pageToken: token,
          today,
          withTotal: false,
        });
        yield { chunk: Buffer.from(accountsCsv(rows, header)) };
        header = false;
        token = rows.length === 1000 ? encodeAccountCursor(rows.at(-1)!.cursor!) : "";
      } while (token);
    },

    async importAccounts(req, ctx) {
      const principal = principalOf(ctx);
      const trx = writeDb(ctx, db);
      const instances = await selectInstancesByName(trx, principal.scope);
      const parsed = parseAccountsCsv(req.csv, instances);
      // Rows valid on their own are checked together (duplicates, existing accounts) by planning them.
      const valid = parsed.rows.filter((r) => !r.error);
      const existing = await selectExistingUsers(
        trx,
        valid.map((r) => ({ instanceId: r.instanceId!, user: r.user })),
      );
      const seen = new Set<string>();
      for (const r of valid) {
        const key = `${r.instanceId}\u0000${r.user}`;
        const problems = creationEntries(`account "${r.user}"`, r.fields, r.user).problems;
        if (problems.length > 0) r.error = problems.map((p) => `${p.field}: ${p.message}`).join("; ");
        else if (existing.has(key)) r.error = `account "${r.user}" exists already on ${r.serverName}/${r.instanceName}`;
        else if (seen.has(key)) r.error = `account "${r.user}" is listed twice for ${r.serverName}/${r.instanceName}`;
        seen.add(key);
      }
      const good = parsed.rows.filter((r) => !r.error);
      const rows = parsed.rows.map((r) => ({ line: r.line, serverName: r.serverName, instanceName: r.instanceName, user: r.user, error: r.error ?? "" }));
      const invalid = rows.length - good.length;
      const answer = { rows, valid: good.length, invalid };
      if (req.dryRun) return answer;
      if (good.length === 0) throw new ConnectError("the CSV has no valid row; nothing was created", Code.InvalidArgument);
      if (invalid > 0 && !req.skipInvalid) {
        const shown = rows
          .filter((r) => r.error)
          .slice(0, 10)
          .map((r) => `line ${r.line}: ${r.error}`);
        throw new ConnectError(
          `${invalid} row${invalid === 1 ? " is" : "s are"} invalid (${shown.join("; ")}); fix them or import with skip_invalid`,
          Code.InvalidArgument,
        );
      }
      const { changeSet } = await createChangeSet(ctx, {
        description: req.description || `CSV import of ${good.length} account${good.length === 1 ? "" : "s"}`,
        creations: good.map((r) => ({ instanceIds: [r.instanceId!], user: r.user, fields: r.fields })),
        edits: [],
        dryRun: false,
        ttlSeconds: 0,
      } as unknown as CreateChangeSetRequest);
      return { ...answer, changeSet };
    },
  };
}
