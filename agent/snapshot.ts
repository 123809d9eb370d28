import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { clone, create, equals, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { type Account as AccountMessage, AccountSchema, InstanceSnapshotSchema, type InstanceSnapshot } from "../gen/myosicam/agent/v1/snapshot_pb.js";
import type { DiscoveredInstance } from "./discovery/discover.js";
import type { createResourceSampler } from "./discovery/resources.js";
import { readConfFile, webifPassword, type ConfView } from "./oscam/conf-file.js";
import { OscamParseError, parseOscamFile, scanOscamFile } from "./oscam/document.js";
import { summariseServerFile } from "./oscam/server-file.js";
import { readUserFile, type Account } from "./oscam/user-file.js";
import type { UnloadedChanges } from "./unloaded-changes.js";

/** Account keys carried in their own snapshot fields (everything else goes to `extra`). */
const accountFields = new Set(["user", "pwd", "disabled", "group", "caid", "ident", "expdate", "description"]);

type Sampler = ReturnType<typeof createResourceSampler>;

/** An account of oscam.user as snapshots (and the results of account changes) carry it. */
export function accountMessage(a: Account): MessageInitShape<typeof AccountSchema> {
  return {
    user: a.user.slice(0, 128),
    password: a.pwd.slice(0, 256),
    enabled: !a.disabled,
    groups: a.group,
    caid: a.raw.caid ?? "",
    ident: a.raw.ident ?? "",
    expiryDate: a.expdateValid ? (a.expdate ?? "") : "",
    unreadableExpiry: a.expdateValid ? "" : (a.raw.expdate ?? "").slice(0, 128),
    description: a.description.slice(0, 1024),
    extra: Object.entries(a.raw)
      .filter(([k]) => !accountFields.has(k))
      .map(([key, value]) => ({ section: "account", key: key.slice(0, 64), value: value.slice(0, 4096) })),
  };
}

/** The accounts of oscam.user's bytes as a snapshot carries them; throws OscamParseError for a file OScam would not read. */
function snapshotAccounts(bytes: Buffer): Array<MessageInitShape<typeof AccountSchema>> {
  return readUserFile(scanOscamFile(bytes, "oscam.user"))
    .accounts.filter((a) => a.user !== "")
    .map(accountMessage);
}

/**
 * The content hash of a snapshot (SyncRequest.present): over everything but the resource readings,
 * the uptime and the hash itself, so an unchanged instance is not resent.
 */
export function contentHashOf(snapshot: InstanceSnapshot): string {
  const content = {
    ...snapshot,
    ref: snapshot.ref && { ...snapshot.ref, contentHash: "" },
    resources: undefined,
    runtime: snapshot.runtime && { ...snapshot.runtime, uptimeSeconds: 0n },
  };
  return createHash("sha256").update(toBinary(InstanceSnapshotSchema, content)).digest("hex");
}

/**
 * The snapshot an instance has after an account change the agent made itself, when `last` (the
 * snapshot last sent) and the accounts now in `userFile` differ only in the accounts the change's
 * results show: `changed` holds each applied change's user with the account its result carries
 * (undefined: deleted). Everything but the accounts is taken from `last` (a later sync reads it
 * again and sends its snapshot if anything else differs). Undefined when any other account
 * differs (a hand edit meanwhile), the file cannot be read as OScam would, or a name repeats.
 */
export function snapshotAfterOwnChange(
  last: InstanceSnapshot,
  userFile: Buffer,
  changed: ReadonlyMap<string, AccountMessage | undefined>,
): InstanceSnapshot | undefined {
  let accounts: AccountMessage[];
  try {
    accounts = snapshotAccounts(userFile).map((a) => create(AccountSchema, a));
  } catch (err) {
    if (err instanceof OscamParseError) return undefined;
    throw err;
  }
  const before = new Map(last.accounts.map((a) => [a.user, a]));
  const now = new Map(accounts.map((a) => [a.user, a]));
  if (before.size !== last.accounts.length || now.size !== accounts.length) return undefined;
  for (const a of accounts) {
    const expected = changed.has(a.user) ? changed.get(a.user) : before.get(a.user);
    if (!expected || !equals(AccountSchema, expected, a)) return undefined;
  }
  for (const user of before.keys()) if (!now.has(user) && !(changed.has(user) && changed.get(user) === undefined)) return undefined;
  for (const [user, account] of changed) if (account && !now.has(user)) return undefined;
  const next = clone(InstanceSnapshotSchema, last);
  next.accounts = accounts;
  next.ref!.contentHash = contentHashOf(next);
  return next;
}

/** A snapshot and what could not be read for it (shown by `discover --print`, logged by the agent). */
export interface BuiltSnapshot {
  snapshot: InstanceSnapshot;
  problems: string[];
}

async function readIfPresent(dir: string, file: string): Promise<Buffer | undefined> {
  return readFile(join(dir, file)).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw new Error(`${file} cannot be read (${err.code})`);
  });
}

/**
 * The snapshot of one instance (DESIGN.md §3.4): config summary, accounts, WebIF endpoint,
 * runtime and resources. What it reads of oscam.server is the reader count; of oscam.conf the
 * non-secret settings, ports without DES keys, and the WebIF password (only to be stored sealed
 * on the panel). The content hash covers everything but the resources and uptime, so an
 * unchanged instance is not resent.
 */
export async function buildSnapshot(instance: DiscoveredInstance, sampler: Sampler, unloaded?: UnloadedChanges): Promise<BuiltSnapshot> {
  const problems = [...instance.problems];
  const restartNeeded = instance.running ? unloaded?.problem(instance.configDir, instance.pid) : undefined;
  if (restartNeeded) problems.push(restartNeeded);
  const dir = instance.configDir;
  let conf: ConfView | undefined;
  let webifPwd = "";
  const confBytes = await readIfPresent(dir, "oscam.conf").catch((e: Error) => (problems.push(e.message), undefined));
  if (confBytes) {
    try {
      const doc = parseOscamFile(confBytes, "oscam.conf");
      conf = readConfFile(doc);
      webifPwd = webifPassword(doc);
    } catch (err) {
      if (!(err instanceof OscamParseError)) throw err;
      if (!problems.includes(err.message)) problems.push(err.message);
    }
  }
  let accounts: Array<MessageInitShape<typeof AccountSchema>> = [];
  const userBytes = await readIfPresent(dir, "oscam.user").catch((e: Error) => (problems.push(e.message), undefined));
  if (userBytes) {
    try {
      accounts = snapshotAccounts(userBytes);
    } catch (err) {
      if (!(err instanceof OscamParseError)) throw err;
      problems.push(err.message);
    }
  }
  const serverBytes = await readIfPresent(dir, "oscam.server").catch((e: Error) => (problems.push(e.message), undefined));
  const readerCount = serverBytes ? summariseServerFile(serverBytes).readers.length : 0;

  const ports = Object.entries(conf?.ports ?? {}).flatMap(([protocol, list]) =>
    // A section whose module the running binary lacks opens no socket (oscam.version says "no").
    (list ?? []).map((p) => ({ protocol, port: p.port, ssl: false, caid: p.caid ?? "", notCompiledIn: instance.modules?.[protocol] === false })),
  );
  if (instance.webif.enabled) ports.push({ protocol: "webif", port: instance.webif.port, ssl: instance.webif.ssl, caid: "", notCompiledIn: false });
  const settings = Object.entries(conf?.settings ?? {}).flatMap(([section, values]) =>
    Object.entries(values ?? {}).map(([key, value]) => ({ section, key, value: value.slice(0, 4096) })),
  );

  const snapshot = create(InstanceSnapshotSchema, {
    ref: { name: instance.name, contentHash: "" },
    configDir: instance.configDir,
    workingDir: instance.tempDir,
    pidFile: instance.pidFile,
    version: instance.version ?? "",
    config: { readerCount, ports, settings, readersLoaded: instance.readers?.loaded, readersEnabled: instance.readers?.enabled },
    accounts,
    webif: {
      host: instance.webif.host,
      port: instance.webif.port,
      ssl: instance.webif.ssl,
      reachable: instance.webif.answers ?? false,
      username: conf?.webif.user ?? "",
      password: webifPwd,
      readOnly: conf?.webif.readonly ?? false,
    },
    runtime: { running: instance.running, pid: instance.pid ?? 0, uptimeSeconds: BigInt(instance.uptimeSeconds ?? 0) },
    problems: problems.slice(0, 64).map((p) => p.slice(0, 1024)),
  });
  snapshot.ref!.contentHash = contentHashOf(snapshot);
  const resources = await sampler.instance(instance.pid, [instance.configDir, instance.tempDir]);
  snapshot.resources = { $typeName: "myosicam.agent.v1.InstanceResources", ...resources };
  return { snapshot, problems };
}
