import { randomUUID } from "node:crypto";
import type { JsonValue } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import type { Account } from "../../gen/myosicam/agent/v1/snapshot_pb.js";
import type { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import type { Knex } from "../lib/db.js";
import type { AgentChange, Entries, ItemOperationName, PlannedItem } from "./account-plans.js";
import { checkPayload, insertCommands } from "./commands.js";
import { upsertReportedAccounts } from "./account-store.js";

/**
 * Change sets as stored (AccountService): one row per change set, one per account it touches,
 * the apply_accounts commands that carry them (one per instance, at most `changesPerCommand`
 * changes each), the agents' per-account answers, and the history they leave.
 */

/** Most changes one command carries; a larger share of one instance goes in several commands. */
export const changesPerCommand = 5000;

/** Who wrote a change found on a server that no change set explains. */
export const outsideActor = "outside the panel";

/** A planned item with where it goes. */
export type TargetedItem = PlannedItem & { serverId: string; instanceName: string; serverName?: string };

export interface NewChangeSet {
  description: string;
  summary: string;
  selection: string;
  spec: JsonValue;
  createdBy: string;
  revertsChangeSetId?: string;
  ttlSeconds?: number;
  items: readonly TargetedItem[];
}

/**
 * Stores a change set and sends its changes: items without a change are `unchanged` at once; the
 * others go to their instance in apply_accounts commands (independent changes, so one account's
 * problem does not hold back the rest). Runs in the caller's transaction.
 */
export async function storeChangeSet(trx: Knex, crypto: Client<typeof CryptoService>, cs: NewChangeSet): Promise<{ id: string }> {
  const id = randomUUID();
  await trx("change_sets").insert({
    id,
    description: cs.description,
    summary: cs.summary,
    selection: cs.selection,
    spec: JSON.stringify(cs.spec),
    created_by: cs.createdBy,
    reverts_change_set_id: cs.revertsChangeSetId ?? null,
  });
  const placed = await sendChanges(
    trx,
    crypto,
    cs.items.map((item, i) => ({ key: i, ...item })),
    cs.createdBy,
    cs.ttlSeconds,
  );
  const rows = cs.items.map((item, i) => ({
    change_set_id: id,
    instance_id: item.instanceId,
    username: item.user,
    operation: item.operation,
    planned: JSON.stringify(item.planned),
    command_id: placed.get(i)?.commandId ?? null,
    change_index: placed.get(i)?.index ?? null,
    status: item.change ? null : "unchanged",
    detail: item.change ? "" : "the account already has these values",
  }));
  for (let i = 0; i < rows.length; i += 2000) await trx("change_set_items").insert(rows.slice(i, i + 2000));
  return { id };
}

/**
 * Puts changes into apply_accounts commands, one per instance (split past `changesPerCommand`),
 * and answers where each went (its key → command and index).
 */
async function sendChanges<K>(
  trx: Knex,
  crypto: Client<typeof CryptoService>,
  changes: ReadonlyArray<{ key: K; serverId: string; instanceName: string; change?: AgentChange }>,
  createdBy: string,
  ttlSeconds?: number,
): Promise<Map<K, { commandId: string; index: number }>> {
  const byInstance = new Map<string, Array<{ key: K; change: AgentChange }>>();
  const targets = new Map<string, { serverId: string; instance: string }>();
  for (const c of changes) {
    if (!c.change) continue;
    const target = `${c.serverId}\u0000${c.instanceName}`;
    targets.set(target, { serverId: c.serverId, instance: c.instanceName });
    const list = byInstance.get(target) ?? byInstance.set(target, []).get(target)!;
    list.push({ key: c.key, change: c.change });
  }
  const commands: Array<{ id: string; serverId: string; instance: string; payload: JsonValue }> = [];
  const placed = new Map<K, { commandId: string; index: number }>();
  for (const [target, list] of byInstance) {
    for (let start = 0; start < list.length; start += changesPerCommand) {
      const chunk = list.slice(start, start + changesPerCommand);
      const commandId = randomUUID();
      const { payload } = checkPayload("apply_accounts", { changes: chunk.map((c) => c.change), independent: true } as unknown as JsonValue);
      commands.push({ id: commandId, ...targets.get(target)!, payload: payload! });
      for (const [index, c] of chunk.entries()) placed.set(c.key, { commandId, index });
    }
  }
  await insertCommands(trx, crypto, commands, { kind: "apply_accounts", createdBy, ttlSeconds });
  return placed;
}

/** How an item stands, from its own answer or else its command's status. */
export const itemStatusSql = `coalesce(it.status, case c.status when 'pending' then 'pending' when 'delivered' then 'sent'
  when 'succeeded' then 'applied' when 'failed' then 'failed' when 'expired' then 'failed' else 'failed' end)`;
const itemFailureSql = `case when it.status is not null then it.failure_code when c.status = 'expired' then 'expired'
  when c.status = 'failed' then coalesce(nullif(c.failure_code, ''), 'failed') else '' end`;
const itemDetailSql = `case when it.status is not null then it.detail when c.status in ('failed', 'expired') then coalesce(c.result, '') else '' end`;

/** The items of a change set (joined with their command, instance and server), for lists and counts. */
export function itemsQuery(db: Knex, changeSetId: string) {
  return db("change_set_items as it")
    .leftJoin("commands as c", "c.id", "it.command_id")
    .join("instances as i", "i.id", "it.instance_id")
    .join("servers as s", "s.id", "i.server_id")
    .where("it.change_set_id", changeSetId);
}

export interface ItemRow {
  id: string;
  change_set_id: string;
  instance_id: string;
  instance_name: string;
  server_id: string;
  server_name: string;
  username: string;
  operation: ItemOperationName;
  planned: Array<{ field: string; before: string; after: string }>;
  command_id: string | null;
  status: "pending" | "sent" | "applied" | "unchanged" | "failed";
  failure_code: string;
  detail: string;
}

export function selectItems(db: Knex, changeSetId: string) {
  return itemsQuery(db, changeSetId).select(
    db.raw("it.id::text as id"),
    "it.change_set_id",
    "it.instance_id",
    "i.name as instance_name",
    "s.id as server_id",
    "s.name as server_name",
    "it.username",
    "it.operation",
    "it.planned",
    "it.command_id",
    db.raw(`${itemStatusSql} as status`),
    db.raw(`${itemFailureSql} as failure_code`),
    db.raw(`${itemDetailSql} as detail`),
  );
}

export interface ChangeSetRow {
  id: string;
  description: string;
  summary: string;
  selection: string;
  created_by: string;
  created_at: Date;
  reverts_change_set_id: string | null;
  retries: number;
}

export interface InstanceProgress {
  server_id: string;
  server_name: string;
  instance_id: string;
  instance_name: string;
  command_id: string | null;
  pending: number;
  sent: number;
  applied: number;
  unchanged: number;
  failed: number;
  failure_code: string;
  detail: string;
}

/** Per-instance counts of a change set's items, with the latest command's failure when it failed as a whole. */
export async function selectInstanceProgress(db: Knex, changeSetId: string, instanceIds?: readonly string[]): Promise<InstanceProgress[]> {
  const query = itemsQuery(db, changeSetId)
    .groupBy("it.instance_id", "i.name", "s.id", "s.name")
    .select(
      "it.instance_id",
      "i.name as instance_name",
      "s.id as server_id",
      "s.name as server_name",
      db.raw("(array_agg(it.command_id order by it.updated_at desc, it.id desc) filter (where it.command_id is not null))[1] as command_id"),
      ...(["pending", "sent", "applied", "unchanged", "failed"] as const).map((status) =>
        db.raw(`(count(*) filter (where ${itemStatusSql} = ?))::int as ??`, [status, status]),
      ),
      // The latest command's failure, when it failed (a retry that worked clears it).
      db.raw(
        "coalesce((array_agg(case when c.status = 'expired' then 'expired' when c.status = 'failed' then c.failure_code else '' end order by c.created_at desc) filter (where c.id is not null))[1], '') as failure_code",
      ),
      db.raw(
        "coalesce((array_agg(case when c.status in ('failed', 'expired') then c.result else '' end order by c.created_at desc) filter (where c.id is not null))[1], '') as detail",
      ),
    )
    .orderBy(["s.name", "i.name"]);
  // One array parameter: a fleet-wide change set's instances can pass PostgreSQL's 65,535 parameters as `in (…)`.
  if (instanceIds) query.whereRaw("it.instance_id = any(?::uuid[])", [[...instanceIds]]);
  return query;
}

/** A per-account answer from an agent's report. */
export interface AccountResultInput {
  index: number;
  status: "applied" | "unchanged" | "failed";
  failureCode: string;
  detail: string;
  before?: Record<string, string>;
  after?: Record<string, string>;
  followedBy: string;
  /** Applied and still in the file: the account as the agent now reads it (a snapshot's fields). */
  account?: Account;
}

/** The class of the advisory locks taken per server by what writes its accounts (two-key form: its own key space). */
const accountViewLockClass = 0x61636374;

/**
 * Serialises, per server, what writes the panel's view of its accounts: a snapshot being stored,
 * and the results of its account changes (which update the view too). Each locks accounts and
 * change set items, in opposite orders, so the two could deadlock; and a result committed while a
 * snapshot is being stored would confirm the change the snapshot then finds unexplained against
 * the view it read before: a false change outside the panel. Taken first in the transaction.
 */
export async function lockAccountViews(trx: Knex, serverIds: readonly string[]): Promise<void> {
  if (serverIds.length === 0) return;
  await trx.raw("select pg_advisory_xact_lock(?, k.h) from (select distinct hashtext(s) as h from unnest(?::text[]) as s order by 1) as k", [
    accountViewLockClass,
    [...serverIds],
  ] as unknown as readonly Knex.RawBinding[]);
}

const withoutPassword = (entries: Record<string, string> | undefined): Entries | null => {
  if (!entries) return null;
  const { pwd: _pwd, ...rest } = entries;
  return rest;
};

/**
 * Records the per-account answers of apply_accounts reports (in the caller's transaction): each
 * item's status, and for each applied change a history row with the keys before and after (the
 * previous password sealed, for Revert). Only items of the reporting server's commands, and only
 * once (a repeated report changes nothing). An applied change whose answer carries the account as
 * it now is (or that deleted it) updates the panel's view of it at once, and is confirmed: the
 * resync that follows then finds nothing new (an agent that sends no account resyncs first). A
 * report's content hash change is taken once the view shows all of its applied changes
 * (adoptContentHashes), so that no sync needs to follow: answers the commands whose hash was taken.
 */
export async function recordAccountResults(
  trx: Knex,
  crypto: Client<typeof CryptoService>,
  reports: ReadonlyArray<{ serverId: string; commandId: string; accountResults: readonly AccountResultInput[]; contentHash?: ContentHashChange }>,
): Promise<Set<string>> {
  const withResults = reports.filter((r) => r.accountResults.length > 0);
  if (withResults.length === 0) return new Set();
  await lockAccountViews(
    trx,
    withResults.map((r) => r.serverId),
  );
  const { rows: items } = await trx.raw(
    `select it.id, it.instance_id, it.username, it.operation, it.change_set_id, it.command_id, it.change_index, cs.created_by
       from change_set_items it
       join commands c on c.id = it.command_id
       join change_sets cs on cs.id = it.change_set_id
       join unnest(?::uuid[], ?::uuid[]) as r(command_id, server_id) on r.command_id = c.id and r.server_id = c.server_id
      where it.status is null
      for update of it`,
    [withResults.map((r) => r.commandId), withResults.map((r) => r.serverId)] as unknown as readonly Knex.RawBinding[],
  );
  const byPosition = new Map<string, AccountResultInput>();
  for (const r of withResults) for (const a of r.accountResults) byPosition.set(`${r.commandId}/${a.index}`, a);
  const updates: Array<{ id: string; status: string; failureCode: string; detail: string; confirmed: boolean }> = [];
  const history: Array<Record<string, unknown> & { passwordBefore?: string }> = [];
  // What the results say each account now is (undefined: deleted), in the order the agents made
  // the changes: reports in arrival order (an agent reports its commands one after the other),
  // changes in their command's order. The last word on an account is what the table shows.
  const reportOrder = new Map(withResults.map((r, i) => [r.commandId, i]));
  const views: Array<{ order: [number, number]; instanceId: string; username: string; account: Account | undefined }> = [];
  /** Per command, how many of its applied changes the view follows. */
  const shown = new Map<string, number>();
  for (const item of items as Array<{
    id: string;
    instance_id: string;
    username: string;
    operation: ItemOperationName;
    change_set_id: string;
    command_id: string;
    change_index: number;
    created_by: string;
  }>) {
    const result = byPosition.get(`${item.command_id}/${item.change_index}`);
    if (!result) continue;
    // The view follows the answer only when it says what the account now is.
    const account = result.status === "applied" && result.account?.user === item.username ? result.account : undefined;
    const gone = result.status === "applied" && item.operation === "delete" && !result.after;
    if (account || gone) {
      views.push({ order: [reportOrder.get(item.command_id)!, item.change_index], instanceId: item.instance_id, username: item.username, account });
      shown.set(item.command_id, (shown.get(item.command_id) ?? 0) + 1);
    }
    updates.push({ id: item.id, status: result.status, failureCode: result.failureCode, detail: result.detail, confirmed: !!account || gone });
    if (result.status !== "applied") continue;
    const passwordBefore = result.before?.pwd;
    const passwordChanged = (result.before?.pwd ?? null) !== (result.after?.pwd ?? null);
    history.push({
      instance_id: item.instance_id,
      username: item.username,
      source: "panel",
      actor: item.created_by,
      change_set_id: item.change_set_id,
      item_id: item.id,
      operation: item.operation,
      before: result.before ? JSON.stringify(withoutPassword(result.before)) : null,
      after: result.after ? JSON.stringify(withoutPassword(result.after)) : null,
      pwd_changed: passwordChanged,
      followed_by: result.followedBy,
      ...(passwordBefore && (passwordChanged || item.operation === "delete") ? { passwordBefore } : {}),
    });
  }
  if (updates.length > 0) {
    await trx.raw(
      `update change_set_items it set status = u.status, failure_code = u.failure_code, detail = u.detail, confirmed = it.confirmed or u.confirmed, updated_at = now()
         from unnest(?::bigint[], ?::text[], ?::text[], ?::text[], ?::boolean[]) as u(id, status, failure_code, detail, confirmed) where it.id = u.id`,
      [
        updates.map((u) => u.id),
        updates.map((u) => u.status),
        updates.map((u) => u.failureCode),
        updates.map((u) => u.detail.slice(0, 4000)),
        updates.map((u) => u.confirmed),
      ] as unknown as readonly Knex.RawBinding[],
    );
  }
  await insertHistory(trx, crypto, history);
  views.sort((a, b) => a.order[0] - b.order[0] || a.order[1] - b.order[1]);
  const last = new Map(views.map((v) => [`${v.instanceId}\u0000${v.username}`, v]));
  await showReportedAccounts(
    trx,
    crypto,
    [...last.values()].flatMap((v) => (v.account ? [{ instanceId: v.instanceId, account: v.account }] : [])),
    [...last.values()].filter((v) => !v.account),
  );
  const taken = await adoptContentHashes(
    trx,
    withResults.filter((r) => r.contentHash && (shown.get(r.commandId) ?? 0) === r.accountResults.filter((a) => a.status === "applied").length),
  );
  // The accounts the panel changed carry who changed them (a creation's row arrives with the next
  // sync when its answer did not carry it).
  const applied = history.filter((h) => h.after !== null);
  if (applied.length > 0) {
    await trx.raw(
      `update accounts a set changed_by = u.actor, changed_at = now(), change_set_id = u.change_set_id
         from unnest(?::uuid[], ?::text[], ?::text[], ?::uuid[]) as u(instance_id, username, actor, change_set_id)
        where a.instance_id = u.instance_id and a.username = u.username`,
      [
        applied.map((h) => h.instance_id),
        applied.map((h) => h.username),
        applied.map((h) => h.actor),
        applied.map((h) => h.change_set_id),
      ] as unknown as readonly Knex.RawBinding[],
    );
  }
  return taken;
}

/** What an agent says its change did to the instance's content hash (ReportResultRequest.content_hash). */
export interface ContentHashChange {
  before: string;
  after: string;
}

/**
 * Takes each report's `after` as its instance's content hash where the panel held `before`: the
 * agent found the instance, read again after the change, different from the snapshot it last
 * sent only in the accounts the results show, and the view now shows every one of them (the
 * caller passes only such reports). Its answer tells the agent, and no sync follows the change;
 * where the panel held another hash, the agent sends the snapshot. Two reports of one server in a
 * batch are taken in their order, one statement per turn, since the second starts from the first
 * one's `after`. Answers the commands whose hash was taken.
 *
 * Taking the hash moves `synced_at` too: it says when the panel's copy of the instance was last
 * brought up to date from the agent (the console's "Synced"), and a change whose hash was taken
 * is followed by no snapshot that would move it.
 */
async function adoptContentHashes(
  trx: Knex,
  reports: ReadonlyArray<{ serverId: string; commandId: string; contentHash?: ContentHashChange }>,
): Promise<Set<string>> {
  const taken = new Set<string>();
  const turns: Array<Array<(typeof reports)[number]>> = [];
  const seen = new Map<string, number>();
  for (const r of reports) {
    const turn = seen.get(r.serverId) ?? 0;
    seen.set(r.serverId, turn + 1);
    (turns[turn] ??= []).push(r);
  }
  for (const turn of turns) {
    const { rows } = await trx.raw(
      `update instances i set content_hash = h.after, synced_at = now()
         from unnest(?::uuid[], ?::uuid[], ?::text[], ?::text[]) as h(command_id, server_id, before, after)
         join commands c on c.id = h.command_id and c.server_id = h.server_id
        where i.server_id = c.server_id and i.name = c.instance and i.content_hash = h.before and i.gone_at is null
        returning h.command_id`,
      [
        turn.map((r) => r.commandId),
        turn.map((r) => r.serverId),
        turn.map((r) => r.contentHash!.before),
        turn.map((r) => r.contentHash!.after),
      ] as unknown as readonly Knex.RawBinding[],
    );
    for (const r of rows as Array<{ command_id: string }>) taken.add(r.command_id);
  }
  return taken;
}

/** The view of accounts as results show them now: `shown` stored (passwords sealed), `deleted` removed. */
async function showReportedAccounts(
  trx: Knex,
  crypto: Client<typeof CryptoService>,
  shown: ReadonlyArray<{ instanceId: string; account: Account }>,
  deleted: ReadonlyArray<{ instanceId: string; username: string }>,
): Promise<void> {
  if (deleted.length > 0) {
    await trx.raw(
      "delete from accounts a using unnest(?::uuid[], ?::text[]) as d(instance_id, username) where a.instance_id = d.instance_id and a.username = d.username",
      [deleted.map((d) => d.instanceId), deleted.map((d) => d.username)] as unknown as readonly Knex.RawBinding[],
    );
  }
  if (shown.length === 0) return;
  const { rows: stored } = await trx.raw(
    "select a.id, a.instance_id, a.username, a.password from accounts a join unnest(?::uuid[], ?::text[]) as k(instance_id, username) on a.instance_id = k.instance_id and a.username = k.username",
    [shown.map((s) => s.instanceId), shown.map((s) => s.account.user)] as unknown as readonly Knex.RawBinding[],
  );
  const byKey = new Map(
    (stored as Array<{ id: string; instance_id: string; username: string; password: string | null }>).map((r) => [`${r.instance_id}\u0000${r.username}`, r]),
  );
  await upsertReportedAccounts(
    trx,
    crypto,
    shown.map((s) => {
      const row = byKey.get(`${s.instanceId}\u0000${s.account.user}`);
      return { id: row?.id ?? randomUUID(), instanceId: s.instanceId, current: row?.password ?? "", account: s.account };
    }),
  );
}

/** Inserts history rows; a previous password is sealed under the row's own id. */
export async function insertHistory(
  trx: Knex,
  crypto: Client<typeof CryptoService>,
  rows: ReadonlyArray<Record<string, unknown> & { passwordBefore?: string }>,
) {
  if (rows.length === 0) return;
  const { rows: ids } = await trx.raw("select nextval('account_history_id_seq')::text as id from generate_series(1, ?)", [rows.length]);
  const sealedFor = rows.flatMap((r, i) => (r.passwordBefore ? [{ i, id: ids[i].id as string, plaintext: r.passwordBefore }] : []));
  const envelopes =
    sealedFor.length === 0
      ? []
      : (
          await crypto.encryptBatch({
            items: sealedFor.map((s) => ({
              plaintext: Buffer.from(s.plaintext, "utf8"),
              context: { table: "account_history", column: "password_before", rowId: s.id },
            })),
          })
        ).envelopes;
  const sealed = new Map(sealedFor.map((s, k) => [s.i, envelopes[k]!]));
  const values = rows.map(({ passwordBefore: _p, ...r }, i) => ({ ...r, id: ids[i].id, password_before: sealed.get(i) ?? null }));
  for (let i = 0; i < values.length; i += 2000) await trx("account_history").insert(values.slice(i, i + 2000));
}

/** A difference a sync found between the panel's view of an account and the file. */
export interface SyncedDifference {
  username: string;
  operation: ItemOperationName;
  before: Entries | null;
  after: Entries | null;
  passwordChanged: boolean;
}

/** How long an unconfirmed change set item may explain what a sync finds. */
const attributionWindow = "24 hours";

/**
 * Explains what a sync found changed on an instance the panel knew: a difference on an account a
 * recent change set was sending is that change set's (its items are confirmed); any other is a
 * change outside the panel — kept as history and marking the account drifted.
 */
export async function attributeSyncedChanges(trx: Knex, crypto: Client<typeof CryptoService>, instanceId: string, diffs: readonly SyncedDifference[]) {
  if (diffs.length === 0) return;
  const { rows } = await trx.raw(
    `select distinct on (it.username) it.id, it.username, it.change_set_id, cs.created_by, it.status
       from change_set_items it join change_sets cs on cs.id = it.change_set_id
      where it.instance_id = ? and not it.confirmed and it.username = any(?::text[])
        and (it.status is null or it.status = 'applied') and cs.created_at > now() - interval '${attributionWindow}'
      order by it.username, it.id desc`,
    [instanceId, diffs.map((d) => d.username)],
  );
  const explained = new Map(
    (rows as Array<{ id: string; username: string; change_set_id: string; created_by: string; status: string | null }>).map((r) => [r.username, r]),
  );
  if (explained.size > 0) {
    const list = [...explained.values()];
    // An applied change is confirmed by the first sync that shows it; one still in flight (the
    // file written, the reload not answered, maybe rolled back) explains every sync until it ends.
    await trx("change_set_items")
      .whereIn(
        "id",
        list.filter((r) => r.status === "applied").map((r) => r.id),
      )
      .update({ confirmed: true });
    await trx.raw(
      `update accounts a set changed_by = u.actor, changed_at = now(), change_set_id = u.change_set_id, drifted = false
         from unnest(?::text[], ?::text[], ?::uuid[]) as u(username, actor, change_set_id) where a.instance_id = ? and a.username = u.username`,
      [list.map((r) => r.username), list.map((r) => r.created_by), list.map((r) => r.change_set_id), instanceId] as unknown as readonly Knex.RawBinding[],
    );
  }
  const outside = diffs.filter((d) => !explained.has(d.username));
  if (outside.length === 0) return;
  await insertHistory(
    trx,
    crypto,
    outside.map((d) => ({
      instance_id: instanceId,
      username: d.username,
      source: "outside",
      actor: outsideActor,
      operation: d.operation,
      before: d.before ? JSON.stringify(d.before) : null,
      after: d.after ? JSON.stringify(d.after) : null,
      pwd_changed: d.passwordChanged,
    })),
  );
  await trx("accounts")
    .where({ instance_id: instanceId })
    .whereIn(
      "username",
      outside.map((d) => d.username),
    )
    .update({ changed_by: outsideActor, changed_at: trx.fn.now(), change_set_id: null, drifted: true });
}

/** Items whose change did not take effect (failed, or their command failed or expired), with the command carrying them. */
export async function selectFailedItems(
  db: Knex,
  changeSetId: string,
): Promise<Array<{ id: string; command_id: string; change_index: number; server_id: string; instance_name: string }>> {
  return itemsQuery(db, changeSetId)
    .whereRaw(`${itemStatusSql} = 'failed'`)
    .whereNotNull("it.command_id")
    .select(db.raw("it.id::text as id"), "it.command_id", "it.change_index", "s.id as server_id", "i.name as instance_name");
}

/**
 * Sends the failed items of a change set again (their changes as first planned, taken from the
 * commands that carried them) and counts the retry. Answers how many were sent.
 */
export async function retryFailedItems(trx: Knex, crypto: Client<typeof CryptoService>, changeSetId: string, createdBy: string): Promise<number> {
  const failed = await selectFailedItems(trx, changeSetId);
  if (failed.length === 0) return 0;
  const payloads = new Map<string, AgentChange[]>();
  const commandIds = [...new Set(failed.map((f) => f.command_id))];
  const stored = await trx("commands").whereIn("id", commandIds).select("id", "payload");
  const opened = await openAll(
    crypto,
    stored.map((c: { id: string; payload: string }) => ({ envelope: c.payload, context: { table: "commands", column: "payload", rowId: c.id } })),
  );
  stored.forEach((c: { id: string }, i: number) => {
    payloads.set(c.id, (JSON.parse(opened[i]!) as { changes: AgentChange[] }).changes);
  });
  const placed = await sendChanges(
    trx,
    crypto,
    failed.map((f) => ({ key: f.id, serverId: f.server_id, instanceName: f.instance_name, change: payloads.get(f.command_id)?.[f.change_index] })),
    createdBy,
  );
  await trx.raw(
    `update change_set_items it set command_id = p.command_id, change_index = p.change_index, status = null, failure_code = '', detail = '', confirmed = false, updated_at = now()
       from unnest(?::bigint[], ?::uuid[], ?::integer[]) as p(id, command_id, change_index) where it.id = p.id`,
    [[...placed.keys()], [...placed.values()].map((p) => p.commandId), [...placed.values()].map((p) => p.index)] as unknown as readonly Knex.RawBinding[],
  );
  await trx("change_sets").where({ id: changeSetId }).increment("retries", 1);
  return placed.size;
}

/** A change set's applied changes, oldest first, with the previous password opened (for Revert). */
export async function selectAppliedHistory(
  db: Knex,
  crypto: Client<typeof CryptoService>,
  changeSetId: string,
): Promise<
  Array<{
    instance_id: string;
    username: string;
    operation: ItemOperationName;
    before: Entries | null;
    after: Entries | null;
    pwd_changed: boolean;
    password: string | undefined;
    followed_by: string;
  }>
> {
  const rows = await db("account_history").where({ change_set_id: changeSetId, source: "panel" }).orderBy("id");
  const sealed = rows.filter((r: { password_before: string | null }) => r.password_before);
  const opened = await openAll(
    crypto,
    sealed.map((r: { id: string; password_before: string }) => ({
      envelope: r.password_before,
      context: { table: "account_history", column: "password_before", rowId: String(r.id) },
    })),
  );
  const passwords = new Map<string, string>(sealed.map((r: { id: string }, i: number) => [String(r.id), opened[i]!]));
  return rows.map((r: Record<string, unknown>) => ({
    instance_id: r.instance_id as string,
    username: r.username as string,
    operation: r.operation as ItemOperationName,
    before: r.before as Entries | null,
    after: r.after as Entries | null,
    pwd_changed: r.pwd_changed as boolean,
    password: passwords.get(String(r.id)),
    followed_by: r.followed_by as string,
  }));
}

/** Opens envelopes (a few at a time) as UTF-8 text, in order. */
async function openAll(
  crypto: Client<typeof CryptoService>,
  items: ReadonlyArray<{ envelope: string; context: { table: string; column: string; rowId: string } }>,
): Promise<string[]> {
  const texts: string[] = [];
  for (let i = 0; i < items.length; i += 32) {
    const part = await Promise.all(items.slice(i, i + 32).map((item) => crypto.decrypt(item)));
    for (const p of part) texts.push(Buffer.from(p.plaintext).toString("utf8"));
  }
  return texts;
}
