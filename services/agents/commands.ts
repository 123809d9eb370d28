import { randomUUID } from "node:crypto";
import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createValidator } from "@bufbuild/protovalidate";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { ApplyAccountsSchema, ApplyConfigSchema, CommandKind, CommandSchema, UpgradeAgentSchema, type Command } from "../../gen/myosicam/agent/v1/agent_pb.js";
import type { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { createBatcher } from "../lib/batcher.js";
import { type AccountResultInput, type ContentHashChange, recordAccountResults } from "./change-sets.js";
import { createPgListener } from "../lib/pg-listener.js";
import { insertRows, prepared, queryErrorWords, type Knex } from "../lib/db.js";
import type { Logger } from "../lib/log.js";
import { agentIncompatibility } from "../lib/releases/compatibility.js";

/** The channel a new command is announced on, with the server id as payload (DESIGN.md §3.4). */
export const commandChannel = "myosicam_commands";
/** Default time a command may wait for its agent before it expires. */
export const defaultCommandTtlSeconds = 15 * 60;

export const commandKinds = {
  apply_accounts: CommandKind.APPLY_ACCOUNTS,
  apply_config: CommandKind.APPLY_CONFIG,
  start: CommandKind.START,
  stop: CommandKind.STOP,
  restart: CommandKind.RESTART,
  reload: CommandKind.RELOAD,
  resync: CommandKind.RESYNC,
  upgrade_agent: CommandKind.UPGRADE_AGENT,
} as const;
export type CommandKindName = keyof typeof commandKinds;

/** A command as stored and listed. */
export interface CommandInfo {
  id: string;
  serverId: string;
  instance: string;
  kind: CommandKindName;
  status: "pending" | "delivered" | "succeeded" | "failed" | "expired";
  createdBy: string;
  createdAt: Date;
  deliveredAt: Date | null;
  finishedAt: Date | null;
  deadline: Date;
  result: string;
  failureCode: string;
  attempts: number;
}

const validator = createValidator();

/** The kinds that carry a payload, and its message. */
const payloadSchemas: Partial<Record<CommandKindName, typeof ApplyAccountsSchema | typeof ApplyConfigSchema | typeof UpgradeAgentSchema>> = {
  apply_accounts: ApplyAccountsSchema,
  apply_config: ApplyConfigSchema,
  upgrade_agent: UpgradeAgentSchema,
};

/**
 * The largest payload one command carries, as JSON: 10,000 account changes of a few keys each are
 * about 1–2 MB. Larger is refused when the command is created (split it into several commands), so
 * nothing accepted can be too large to seal, store or deliver (the crypto service's limits are above it).
 */
export const maxCommandPayloadBytes = 8 * 1024 * 1024;

/** Checks a kind and its JSON payload; InvalidArgument naming the field when wrong. */
export function checkPayload(kind: string, payload: JsonValue | undefined): { kind: CommandKindName; payload?: JsonValue } {
  if (!(kind in commandKinds)) throw new ConnectError(`kind must be one of ${Object.keys(commandKinds).join(", ")}, got "${kind}"`, Code.InvalidArgument);
  const name = kind as CommandKindName;
  const schema = payloadSchemas[name];
  if (!schema) {
    if (payload !== undefined && payload !== null && !(typeof payload === "object" && Object.keys(payload).length === 0)) {
      throw new ConnectError(`${name} takes no payload`, Code.InvalidArgument);
    }
    return { kind: name };
  }
  let message;
  try {
    message = fromJson(schema, payload ?? {});
  } catch (err) {
    throw new ConnectError(`payload: ${(err as Error).message}`, Code.InvalidArgument);
  }
  const result = validator.validate(schema, message);
  if (result.kind !== "valid") {
    const detail = result.kind === "invalid" ? result.violations.map((v) => v.toString()).join("; ") : result.error.message;
    throw new ConnectError(`payload: ${detail}`, Code.InvalidArgument);
  }
  const json = toJson(schema, message);
  const bytes = Buffer.byteLength(JSON.stringify(json));
  if (bytes > maxCommandPayloadBytes) {
    throw new ConnectError(
      `payload: ${(bytes / 1048576).toFixed(1)} MB is more than one command carries (${maxCommandPayloadBytes / 1048576} MB); split the changes into several commands`,
      Code.InvalidArgument,
    );
  }
  return { kind: name, payload: json };
}

const infoOf = (r: Record<string, unknown>): CommandInfo => ({
  id: r.id as string,
  serverId: r.server_id as string,
  instance: r.instance as string,
  kind: r.kind as CommandKindName,
  status: r.status as CommandInfo["status"],
  createdBy: r.created_by as string,
  createdAt: r.created_at as Date,
  deliveredAt: r.delivered_at as Date | null,
  finishedAt: r.finished_at as Date | null,
  deadline: r.deadline as Date,
  result: r.result as string,
  failureCode: r.failure_code as string,
  attempts: r.attempts as number,
});

/**
 * Creates one command per server (same kind and payload), sealed, and announces them with
 * NOTIFY in the same transaction, so any replica holding the agent's stream delivers at once.
 */
export async function createCommands(
  db: Knex,
  crypto: Client<typeof CryptoService>,
  input: { serverIds: readonly string[]; instance?: string; kind: string; payload?: JsonValue; createdBy: string; ttlSeconds?: number },
): Promise<CommandInfo[]> {
  const { kind, payload } = checkPayload(input.kind, input.payload);
  if (input.serverIds.length === 0) throw new ConnectError("name at least one server", Code.InvalidArgument);
  const known = await db("servers")
    .whereRaw("id = any(?::uuid[])", [[...input.serverIds]])
    .whereNot({ status: "revoked" })
    .select("id");
  const knownIds = new Set(known.map((k: { id: string }) => k.id));
  const missing = input.serverIds.filter((id) => !knownIds.has(id));
  if (missing.length > 0) throw new ConnectError(`no enrolled server ${missing.join(", ")}; see \`npx myosicam agent list\``, Code.NotFound);
  if (kind === "upgrade_agent") await requireReleases(db, input.serverIds, (payload as { version: string }).version);
  return insertCommands(
    db,
    crypto,
    input.serverIds.map((serverId) => ({ serverId, instance: input.instance ?? "", payload })),
    { kind, createdBy: input.createdBy, ttlSeconds: input.ttlSeconds },
  );
}

/** The `<os>-<arch>` an agent's release is built for, from what it reported at registration. */
export const releaseTargetOf = (server: { os: string | null; arch: string | null }) => `${server.os ?? "unknown"}-${server.arch ?? "unknown"}`;

/**
 * An upgrade is sent only where its release is stored for the server's OS and architecture, so no
 * agent is asked for something it cannot download; FailedPrecondition names what to upload.
 */
export async function requireReleases(db: Knex, serverIds: readonly string[], version: string): Promise<void> {
  // An agent this panel would refuse would never heartbeat: its upgrade could only roll back.
  const incompatible = agentIncompatibility(version);
  if (incompatible) throw new ConnectError(`cannot upgrade to ${version}: ${incompatible}`, Code.FailedPrecondition);
  const servers = await db("servers")
    .whereIn("id", [...serverIds])
    .orderBy("name")
    .select("name", "os", "arch");
  const targets = new Set(servers.map(releaseTargetOf));
  const present = new Set(
    (
      await db("agent_releases")
        .where({ version })
        .whereIn("target", [...targets])
        .select("target")
    ).map((r: { target: string }) => r.target),
  );
  const lacking = servers.filter((s: { os: string | null; arch: string | null }) => !present.has(releaseTargetOf(s)));
  if (lacking.length > 0) {
    const names = lacking.slice(0, 5).map((s: { name: string; os: string | null; arch: string | null }) => `${s.name} (${releaseTargetOf(s)})`);
    throw new ConnectError(
      `agent ${version} is not uploaded for ${names.join(", ")}${lacking.length > 5 ? ` and ${lacking.length - 5} more` : ""}; upload it with \`npx myosicam release upload <dir>\` (see \`npx myosicam release list\`)`,
      Code.FailedPrecondition,
    );
  }
}

/**
 * Inserts commands of one kind whose payloads were checked (checkPayload), each with its own
 * target and payload, sealed in one batch, and announces them with NOTIFY in the same transaction.
 */
export async function insertCommands(
  db: Knex,
  crypto: Client<typeof CryptoService>,
  targets: ReadonlyArray<{ id?: string; serverId: string; instance: string; payload?: JsonValue }>,
  options: { kind: CommandKindName; createdBy: string; ttlSeconds?: number },
): Promise<CommandInfo[]> {
  if (targets.length === 0) return [];
  const ttl = options.ttlSeconds ?? defaultCommandTtlSeconds;
  const rows = targets.map((t) => ({ ...t, id: t.id ?? randomUUID() }));
  const withPayload = rows.filter((r) => r.payload !== undefined);
  const envelopes =
    withPayload.length === 0
      ? []
      : (
          await crypto.encryptBatch({
            items: withPayload.map((r) => ({
              plaintext: Buffer.from(JSON.stringify(r.payload)),
              context: { table: "commands", column: "payload", rowId: r.id },
            })),
          })
        ).envelopes;
  const sealed = new Map(withPayload.map((r, i) => [r.id, envelopes[i]!]));
  const insert = async (trx: Knex) => {
    // In as many statements as it takes: a fan-out to every server can pass PostgreSQL's parameter limit.
    const inserted = await insertRows<Record<string, unknown>>(
      trx,
      "commands",
      rows.map((r) => ({
        id: r.id,
        server_id: r.serverId,
        instance: r.instance,
        kind: options.kind,
        payload: sealed.get(r.id) ?? null,
        target_version: options.kind === "upgrade_agent" ? ((r.payload as { version?: string } | undefined)?.version ?? null) : null,
        created_by: options.createdBy,
        deadline: trx.raw("now() + make_interval(secs => ?)", [ttl]),
      })),
      ["*"],
    );
    await trx.raw("select pg_notify(?, server_id) from unnest(?::text[]) as server_id", [commandChannel, [...new Set(rows.map((r) => r.serverId))]]);
    return inserted;
  };
  const created = db.isTransaction ? await insert(db) : await db.transaction(insert);
  return created.map(infoOf);
}

export async function listCommands(db: Knex, options: { serverId?: string; limit?: number } = {}): Promise<CommandInfo[]> {
  const query = db("commands")
    .orderBy("created_at", "desc")
    .limit(options.limit ?? 100);
  if (options.serverId) query.where({ server_id: options.serverId });
  return (await query).map(infoOf);
}

/** Waits until every command has finished (succeeded, failed or expired) or `timeoutMs` passed. */
export async function waitForCommands(db: Knex, ids: readonly string[], timeoutMs: number): Promise<CommandInfo[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = (await db("commands").whereIn("id", [...ids])).map(infoOf);
    if (rows.every((r) => ["succeeded", "failed", "expired"].includes(r.status)) || Date.now() > deadline) return rows;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Marks commands past their deadline `expired`; answers how many. */
export async function expireCommands(db: Knex): Promise<number> {
  return db("commands")
    .whereIn("status", ["pending", "delivered"])
    .where("deadline", "<=", db.fn.now())
    .update({ status: "expired", finished_at: db.fn.now(), result: "the agent did not finish it before its deadline" });
}

/** What one command stream asks for: what is due for its server, less what it was already sent. */
export interface ClaimRequest {
  serverId: string;
  sentOnThisStream: ReadonlySet<string>;
}

/**
 * Claims what each stream's agent should get now: pending commands and delivered ones it has not
 * acknowledged (a reconnect redelivers them), minus those already sent on that stream, as Command
 * messages with their payloads opened. For many streams at once: one statement locks (skipping rows another stream
 * holds right now), marks delivered and returns up to 100 commands per server, and one
 * DecryptBatch opens their payloads. Answers per request, in order. A server asked for twice in
 * one batch (two streams of one agent) is served on its first request only; the other stream
 * looks again at its next wake-up. A command that cannot be opened fails now, with its reason,
 * instead of failing every stream of its server until its deadline.
 */
export async function claimCommandsFor(db: Knex, crypto: Client<typeof CryptoService>, requests: readonly ClaimRequest[]): Promise<Command[][]> {
  const first = new Map<string, ClaimRequest>();
  for (const r of requests) if (!first.has(r.serverId)) first.set(r.serverId, r);
  const asked = [...first.values()];
  const { rows } = await prepared(
    db.raw(
      `update commands c set status = 'delivered', delivered_at = now(), attempts = c.attempts + 1
      where c.id in (select due.id
                       from unnest(?::uuid[], ?::text[]) as r(server_id, sent)
                       cross join lateral (
                         select id from commands
                          where server_id = r.server_id and status in ('pending', 'delivered') and deadline > now()
                            and not (id = any(string_to_array(r.sent, ',')::uuid[]))
                          order by created_at limit 100
                          for update skip locked) due)
      returning c.*`,
      [asked.map((r) => r.serverId), asked.map((r) => [...r.sentOnThisStream].join(","))] as unknown as readonly Knex.RawBinding[],
    ),
    "claim_commands",
  );
  const due = (rows as Array<CommandRow & { server_id: string; created_at: Date }>).sort((a, b) => a.created_at.getTime() - b.created_at.getTime());
  const withPayload = due.filter((r) => r.payload);
  const opened =
    withPayload.length === 0
      ? []
      : (
          await crypto.decryptBatch({
            items: withPayload.map((r) => ({ envelope: r.payload!, context: { table: "commands", column: "payload", rowId: r.id } })),
          })
        ).results;
  const plaintexts = new Map(withPayload.map((r, i) => [r.id, opened[i]!]));
  const delivered = new Map<string, Command[]>();
  const undeliverable = new Map<string, Array<{ id: string; reason: string }>>();
  for (const r of due) {
    try {
      const result = plaintexts.get(r.id);
      if (result?.result.case === "failure") throw new Error(result.result.value.message);
      const payload = result?.result.case === "opened" ? result.result.value.plaintext : undefined;
      const list = delivered.get(r.server_id) ?? delivered.set(r.server_id, []).get(r.server_id)!;
      list.push(commandOf(r, payload));
    } catch (err) {
      const list = undeliverable.get(r.server_id) ?? undeliverable.set(r.server_id, []).get(r.server_id)!;
      list.push({ id: r.id, reason: (err as Error).message });
    }
  }
  for (const [serverId, failures] of undeliverable) await failUndeliverable(db, serverId, failures);
  return requests.map((r) => (first.get(r.serverId) === r ? (delivered.get(r.serverId) ?? []) : []));
}

/**
 * Coalesces the claims of streams woken together: a fan-out to 1,000 agents, or 1,000 agents
 * reconnecting after a restart, makes a few statements instead of 1,000 transactions (each with its
 * own commit) queueing for the pool. No added wait when idle.
 */
export function createCommandClaimer(db: Knex, crypto: Client<typeof CryptoService>) {
  const claims = createBatcher<ClaimRequest, Command[]>({ windowMs: 0, maxItems: 500, write: (items) => claimCommandsFor(db, crypto, items) });
  return {
    claim: (serverId: string, sentOnThisStream: ReadonlySet<string>) => claims.write({ serverId, sentOnThisStream }),
    stop: () => claims.stop(),
  };
}

export type CommandClaimer = ReturnType<typeof createCommandClaimer>;

/** A stored command row as far as delivery needs it. */
interface CommandRow {
  id: string;
  instance: string;
  kind: string;
  payload: string | null;
  deadline: Date;
  attempts: number;
}

/** A stored command as the message its agent gets, from its opened payload; throws when that cannot be read. */
function commandOf(r: CommandRow, plaintext: Uint8Array | undefined): Command {
  const payload = plaintext ? (JSON.parse(Buffer.from(plaintext).toString("utf8")) as JsonValue) : undefined;
  const kind = r.kind as CommandKindName;
  return create(CommandSchema, {
    id: r.id,
    instance: r.instance,
    kind: commandKinds[kind],
    payload:
      kind === "apply_accounts" && payload
        ? { case: "applyAccounts", value: fromJson(ApplyAccountsSchema, payload) }
        : kind === "apply_config" && payload
          ? { case: "applyConfig", value: fromJson(ApplyConfigSchema, payload) }
          : kind === "upgrade_agent" && payload
            ? { case: "upgradeAgent", value: fromJson(UpgradeAgentSchema, payload) }
            : { case: undefined },
    deadline: timestampFromDate(r.deadline),
    attempt: r.attempts,
  });
}

/** Marks commands the panel could not turn into a message `failed`, code `undeliverable`, with the reason. */
async function failUndeliverable(db: Knex, serverId: string, failures: ReadonlyArray<{ id: string; reason: string }>): Promise<void> {
  await db.raw(
    `update commands c set status = 'failed', finished_at = now(), failure_code = 'undeliverable',
            result = 'the panel could not deliver this command: ' || r.reason
       from unnest(?::uuid[], ?::text[]) as r(id, reason)
      where c.id = r.id and c.server_id = ?`,
    [failures.map((f) => f.id), failures.map((f) => f.reason.slice(0, 2000)), serverId] as unknown as readonly Knex.RawBinding[],
  );
}

/** A result as an agent reports it. */
export interface CommandResult {
  serverId: string;
  commandId: string;
  succeeded: boolean;
  failureCode: string;
  detail: string;
  restartRequiredKeys: readonly string[];
  /** apply_accounts: the agent's answer per change. */
  accountResults?: readonly AccountResultInput[];
  /** apply_accounts: what the change did to the instance's content hash, when the agent could tell. */
  contentHash?: ContentHashChange;
}

/**
 * Records results in one statement. Idempotent: a repeated report of a finished command is
 * accepted and changes nothing; a command of another server (or none) is NotFound, per item.
 */
export async function recordResults(db: Knex, results: readonly CommandResult[]): Promise<Array<true | ConnectError>> {
  if (results.length === 0) return [];
  const { rows } = await db.raw(
    `update commands c set status = r.status, finished_at = now(), result = r.result, failure_code = r.failure_code,
            restart_required_keys = array(select jsonb_array_elements_text(r.keys::jsonb))
       from unnest(?::uuid[], ?::uuid[], ?::text[], ?::text[], ?::text[], ?::text[]) as r(id, server_id, status, result, failure_code, keys)
      where c.id = r.id and c.server_id = r.server_id and c.status in ('pending', 'delivered')
      returning c.id`,
    [
      results.map((r) => r.commandId),
      results.map((r) => r.serverId),
      results.map((r) => (r.succeeded ? "succeeded" : "failed")),
      results.map((r) => r.detail),
      results.map((r) => r.failureCode),
      results.map((r) => JSON.stringify(r.restartRequiredKeys)),
    ] as unknown as readonly Knex.RawBinding[],
  );
  const updated = new Set((rows as Array<{ id: string }>).map((r) => r.id));
  const rest = results.filter((r) => !updated.has(r.commandId));
  const known = new Set(
    rest.length === 0
      ? []
      : (
          await db("commands")
            .whereIn(
              "id",
              rest.map((r) => r.commandId),
            )
            .select("id", "server_id")
        ).map((r: { id: string; server_id: string }) => `${r.id}/${r.server_id}`),
  );
  return results.map((r) =>
    updated.has(r.commandId) || known.has(`${r.commandId}/${r.serverId}`) ? true : new ConnectError(`no command ${r.commandId} for this server`, Code.NotFound),
  );
}

/** What storing a result answers: whether the panel took the instance's content hash it carried. */
export interface StoredResult {
  contentHashTaken: boolean;
}

/**
 * Coalesces ReportResult writes: the results that arrive while one transaction runs go into the
 * next. A result and its per-account answers (change set items, history) commit together.
 */
export function createResultWriter(db: Knex, crypto: Client<typeof CryptoService>) {
  return createBatcher<CommandResult, StoredResult>({
    write: (items) =>
      db.transaction(async (trx) => {
        const outcomes = await recordResults(trx, items);
        const taken = await recordAccountResults(
          trx,
          crypto,
          items.flatMap((r, i) =>
            outcomes[i] === true && r.accountResults?.length
              ? [{ serverId: r.serverId, commandId: r.commandId, accountResults: r.accountResults, contentHash: r.contentHash }]
              : [],
          ),
        );
        return outcomes.map((o, i) => (o === true ? { contentHashTaken: taken.has(items[i]!.commandId) } : o));
      }),
    windowMs: 0,
    maxItems: 1000,
  });
}

/**
 * The servers with a command some stream of theirs should claim: one not delivered yet, or one
 * delivered more than `staleSeconds` ago and still unanswered (its stream may have died before the
 * agent got it; a stream that sent it skips it).
 */
export async function selectServersWithDueCommands(db: Knex, staleSeconds: number): Promise<string[]> {
  const { rows } = await db.raw(
    `select distinct server_id from commands
      where deadline > now()
        and (status = 'pending' or (status = 'delivered' and delivered_at < now() - make_interval(secs => ?)))`,
    [staleSeconds],
  );
  return (rows as Array<{ server_id: string }>).map((r) => r.server_id);
}

/**
 * Wakes the streams of the servers a command is announced for: one LISTEN connection per process
 * for the announcements (NOTIFY), reconnecting when it drops and then waking every stream. What a
 * lost announcement would leave waiting (a silently dead connection, a claim that lost a race
 * with another stream of the same agent) is found by a sweep every `sweepMs`: one query per
 * process for the servers with a due command, whose streams here are woken. Streams claim only
 * when woken: 10,000 held streams each claiming at its keepalive made 400 statements a second.
 */
export function createCommandHub(db: Knex, url: string, log: Logger, sweepMs: number) {
  const waiting = new Map<string, Set<() => void>>();
  const wakeServer = (serverId: string) => {
    for (const wake of waiting.get(serverId) ?? []) wake();
  };
  const listener = createPgListener({
    url,
    channel: commandChannel,
    log,
    what: "command notifications",
    onNotify: wakeServer,
    // Whatever was announced while not listening: wake everyone to look.
    onConnect: () => {
      for (const set of waiting.values()) for (const wake of set) wake();
    },
  });
  let sweeping = false;
  const sweep = async () => {
    if (sweeping || waiting.size === 0) return;
    sweeping = true;
    try {
      for (const serverId of await selectServersWithDueCommands(db, sweepMs / 1000)) wakeServer(serverId);
    } catch (err) {
      log.warn({ reason: queryErrorWords(err) }, "could not look for commands due; the next sweep tries again");
    } finally {
      sweeping = false;
    }
  };
  let sweeper: NodeJS.Timeout | undefined;
  let started = false;
  return {
    /** Registers a stream's wake-up; answers the function that unregisters it. */
    subscribe(serverId: string, wake: () => void): () => void {
      if (!started) {
        started = true;
        listener.start();
        sweeper = setInterval(() => void sweep(), sweepMs).unref();
      }
      const set = waiting.get(serverId) ?? waiting.set(serverId, new Set()).get(serverId)!;
      set.add(wake);
      return () => {
        set.delete(wake);
        if (set.size === 0) waiting.delete(serverId);
      };
    },
    /** Looks for commands due now (as the timer does every `sweepMs`); resolves when done. */
    sweep,
    stop: () => {
      if (sweeper) clearInterval(sweeper);
      return listener.stop();
    },
  };
}
