import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { SyncRequest } from "../../gen/myosicam/agent/v1/agent_pb.js";
import type { Account, InstanceSnapshot } from "../../gen/myosicam/agent/v1/snapshot_pb.js";
import type { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { asReal, type Knex } from "../lib/db.js";
import { entriesOfFields } from "./account-plans.js";
import { type AccountRow, upsertReportedAccounts } from "./account-store.js";
import { attributeSyncedChanges, lockAccountViews, type SyncedDifference } from "./change-sets.js";

/** How long resource readings are kept (the retention job deletes older ones). */
export const resourceRetentionDays = 7;

/**
 * Stores what an agent reports (DESIGN.md §3.4). Each snapshot replaces its instance's previous
 * state in one transaction: the instance row, its accounts (upserted by user name, the ones gone
 * from the file deleted; passwords sealed through CryptoService in one batch), the WebIF password
 * (sealed, in oscam_installs) and one resource reading (and one of the host). Instances the agent
 * no longer lists are marked gone, not deleted. Answers which listed instances the panel needs in
 * full. Statements are few (nine for one instance, counting the transaction's own and the lock
 * that keeps the results of the server's account changes out meanwhile): a fleet's first syncs
 * wait for each other, and each round trip is as slow as the panel's busiest moment.
 */
export async function storeSync(db: Knex, crypto: Client<typeof CryptoService>, serverId: string, req: SyncRequest): Promise<{ resend: string[] }> {
  const names = new Set<string>();
  for (const ref of req.present) {
    if (names.has(ref.name)) throw new ConnectError(`present lists instance "${ref.name}" twice`, Code.InvalidArgument);
    names.add(ref.name);
  }
  for (const snapshot of req.snapshots) {
    if (!names.has(snapshot.ref!.name)) throw new ConnectError(`snapshot of "${snapshot.ref!.name}" is not in present`, Code.InvalidArgument);
    await storeSnapshot(db, crypto, serverId, snapshot);
  }
  // One statement: the host's reading, instances the agent no longer reports marked gone (kept,
  // not deleted), listed ones that came back no longer gone, and the stored hash of each listed one.
  // (Every part sees the rows as they were before it; none changes a content hash.)
  const h = req.host;
  const { rows: storedRows } = await db.raw(
    `with host_sample as (
       insert into host_resource_samples (server_id, cpu_percent, memory_used_mb, memory_total_mb, disk_used_mb, load_average)
       select ?::uuid, ?::real, ?::real, ?::real, ?::real, ?::real[] where ?::boolean
     ), went as (
       update instances set gone_at = now() where server_id = ?::uuid and gone_at is null and not (name = any(?::text[]))
     ), came_back as (
       update instances set gone_at = null where server_id = ?::uuid and name = any(?::text[]) and gone_at is not null
     )
     select name, content_hash from instances where server_id = ?::uuid and name = any(?::text[])`,
    [
      serverId,
      asReal(h?.cpuPercent ?? 0),
      asReal(h?.memoryUsedMb ?? 0),
      asReal(h?.memoryTotalMb ?? 0),
      asReal(h?.diskUsedMb ?? 0),
      h?.load ? [h.load.one, h.load.five, h.load.fifteen].map(asReal) : [],
      h !== undefined,
      serverId,
      [...names],
      serverId,
      [...names],
      serverId,
      [...names],
    ] as unknown as readonly Knex.RawBinding[],
  );
  const stored = new Map<string, string>((storedRows as Array<{ name: string; content_hash: string }>).map((r) => [r.name, r.content_hash]));
  const sent = new Set(req.snapshots.map((s) => s.ref!.name));
  const resend = req.present.filter((ref) => !sent.has(ref.name) && stored.get(ref.name) !== ref.contentHash).map((ref) => ref.name);
  return { resend };
}

async function storeSnapshot(db: Knex, crypto: Client<typeof CryptoService>, serverId: string, s: InstanceSnapshot): Promise<void> {
  const seen = new Set<string>();
  for (const a of s.accounts) {
    if (seen.has(a.user)) throw new ConnectError(`snapshot of "${s.ref!.name}" lists account "${a.user}" twice`, Code.InvalidArgument);
    seen.add(a.user);
  }
  await db.transaction(async (trx) => {
    await lockAccountViews(trx, [serverId]);
    const row = {
      server_id: serverId,
      name: s.ref!.name,
      config_dir: s.configDir,
      working_dir: s.workingDir,
      pid_file: s.pidFile,
      version: s.version,
      content_hash: s.ref!.contentHash,
      running: s.runtime?.running ?? false,
      pid: s.runtime?.pid || null,
      uptime_seconds: s.runtime ? s.runtime.uptimeSeconds.toString() : null,
      reader_count: s.config?.readerCount ?? 0,
      readers_loaded: s.config?.readersLoaded ?? null,
      readers_enabled: s.config?.readersEnabled ?? null,
      // `active`: false for a configured port of a module the running binary lacks (it opens no socket).
      ports: JSON.stringify((s.config?.ports ?? []).map((p) => ({ protocol: p.protocol, port: p.port, ssl: p.ssl, caid: p.caid, active: !p.notCompiledIn }))),
      problems: JSON.stringify(s.problems),
      settings: JSON.stringify((s.config?.settings ?? []).map((x) => ({ section: x.section, key: x.key, value: x.value }))),
      webif: JSON.stringify({
        host: s.webif?.host ?? "",
        port: s.webif?.port ?? 0,
        ssl: s.webif?.ssl ?? false,
        reachable: s.webif?.reachable ?? false,
        username: s.webif?.username ?? "",
        readOnly: s.webif?.readOnly ?? false,
      }),
      synced_at: trx.fn.now(),
      gone_at: null,
    };
    // The key columns are not rewritten: an upsert that sets them locks the row as a key update,
    // which waits for every foreign key sharing it (a change set's items being stored).
    const { server_id: _serverId, name: _name, ...changed } = row;
    // A row inserted here has no xmax; one the conflict updated has this transaction's.
    const [instance] = await trx("instances")
      .insert({ id: randomUUID(), ...row })
      .onConflict(["server_id", "name"])
      .merge(changed)
      .returning(["id", trx.raw("(xmax = 0) as inserted")]);
    const instanceId: string = instance.id;
    const known = !instance.inserted;

    const existing = new Map<string, StoredAccount>(
      (
        await trx("accounts")
          .where({ instance_id: instanceId })
          .select(
            "id",
            "username",
            "password",
            "enabled",
            "groups",
            "caid",
            "ident",
            trx.raw("coalesce(to_char(expiry_date, 'YYYY-MM-DD'), '') as expiry_date"),
            "unreadable_expiry",
            "description",
            "extra",
          )
      ).map((r: StoredAccount) => [r.username, r]),
    );
    const rows = s.accounts.map((a) => {
      const stored = existing.get(a.user);
      return { id: stored?.id ?? randomUUID(), instanceId, current: stored?.password ?? "", account: a };
    });
    // The same statement deletes the accounts gone from the file (the two parts touch different user names).
    const passwords = await upsertReportedAccounts(trx, crypto, rows, {
      sql: "delete from accounts where instance_id = ? and not (username = any(?::text[]))",
      bindings: [instanceId, [...seen]],
    });
    // What changed since the panel last saw this instance: a change set's doing, or drift.
    if (known) {
      const diffs = differences(existing, s.accounts, passwords);
      await attributeSyncedChanges(trx, crypto, instanceId, diffs);
    }

    const [install] = await trx("oscam_installs")
      .insert({ id: randomUUID(), server_id: serverId, instance_name: s.ref!.name, webif_username: s.webif?.username ?? null })
      .onConflict(["server_id", "instance_name"])
      .merge({ webif_username: s.webif?.username ?? null, updated_at: trx.fn.now() })
      .returning(["id", "webif_password"]);
    // An unchanged password comes back as the stored envelope, and its row is not rewritten.
    const password = s.webif?.password
      ? (
          await crypto.encrypt({
            plaintext: Buffer.from(s.webif.password, "utf8"),
            context: { table: "oscam_installs", column: "webif_password", rowId: install.id },
            current: install.webif_password ?? "",
          })
        ).envelope
      : null;
    // The WebIF password and the resource reading in one statement.
    const r = s.resources;
    await trx.raw(
      `with sample as (
         insert into resource_samples (instance_id, cpu_percent, rss_mb, disk_mb) select ?::uuid, ?::real, ?::real, ?::real where ?::boolean
       )
       update oscam_installs set webif_password = ? where id = ? and webif_password is distinct from ?`,
      [instanceId, asReal(r?.cpuPercent ?? 0), asReal(r?.rssMb ?? 0), asReal(r?.diskMb ?? 0), r !== undefined, password, install.id, password],
    );
  });
}

/** An account row as stored before a sync (its expiry as text, '' for never). */
type StoredAccount = Pick<
  AccountRow,
  "id" | "username" | "password" | "enabled" | "groups" | "caid" | "ident" | "unreadable_expiry" | "description" | "extra"
> & {
  expiry_date: string;
};

const storedEntries = (r: StoredAccount) => entriesOfFields({ ...r, expiryDate: r.expiry_date, unreadableExpiry: r.unreadable_expiry });
const reportedEntries = (a: Account) =>
  entriesOfFields({ ...a, expiryDate: a.expiryDate, unreadableExpiry: a.unreadableExpiry, extra: a.extra.map((x) => ({ key: x.key, value: x.value })) });

/**
 * The accounts a snapshot shows created, changed or deleted against the stored view (`sealed` is
 * the snapshot's passwords as stored: an unchanged one is the same envelope).
 */
function differences(stored: ReadonlyMap<string, StoredAccount>, accounts: readonly Account[], sealed: ReadonlyArray<string | null>): SyncedDifference[] {
  const diffs: SyncedDifference[] = [];
  accounts.forEach((a, i) => {
    const before = stored.get(a.user);
    const after = reportedEntries(a);
    if (!before) {
      diffs.push({ username: a.user, operation: "create", before: null, after, passwordChanged: sealed[i] !== null });
      return;
    }
    const previous = storedEntries(before);
    const passwordChanged = before.password !== sealed[i];
    if (passwordChanged || JSON.stringify(sortedEntries(previous)) !== JSON.stringify(sortedEntries(after))) {
      diffs.push({ username: a.user, operation: "update", before: previous, after, passwordChanged });
    }
  });
  const present = new Set(accounts.map((a) => a.user));
  for (const [username, row] of stored) {
    if (!present.has(username)) diffs.push({ username, operation: "delete", before: storedEntries(row), after: null, passwordChanged: row.password !== null });
  }
  return diffs;
}

const sortedEntries = (entries: Record<string, string>) => Object.entries(entries).sort(([a], [b]) => a.localeCompare(b));

/** Deletes resource readings older than the retention; answers how many. */
export async function purgeResourceSamples(db: Knex, days = resourceRetentionDays): Promise<number> {
  const cutoff = db.raw("now() - make_interval(days => ?)", [days]);
  const instances = await db("resource_samples").where("at", "<", cutoff).delete();
  return instances + (await db("host_resource_samples").where("at", "<", cutoff).delete());
}

/** Live (not gone) OScam instances, counted toward the license quota. */
export async function countLiveInstances(db: Knex): Promise<number> {
  const [row] = await db("instances as i")
    .join("servers as s", "s.id", "i.server_id")
    .whereNull("i.gone_at")
    .whereIn("s.status", ["pending", "online", "unreachable"])
    .count({ n: "*" });
  return Number(row?.n ?? 0);
}
