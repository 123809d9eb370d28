import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { type AccountSchema, InstanceSnapshotSchema, type InstanceSnapshot } from "../gen/myosicam/agent/v1/snapshot_pb.js";
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
  let accounts: Account[] = [];
  const userBytes = await readIfPresent(dir, "oscam.user").catch((e: Error) => (problems.push(e.message), undefined));
  if (userBytes) {
    try {
      accounts = readUserFile(scanOscamFile(userBytes, "oscam.user")).accounts;
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
    accounts: accounts.filter((a) => a.user !== "").map(accountMessage),
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
  const hash = createHash("sha256")
    .update(toBinary(InstanceSnapshotSchema, { ...snapshot, runtime: snapshot.runtime && { ...snapshot.runtime, uptimeSeconds: 0n } }))
    .digest("hex");
  snapshot.ref!.contentHash = hash;
  const resources = await sampler.instance(instance.pid, [instance.configDir, instance.tempDir]);
  snapshot.resources = { $typeName: "myosicam.agent.v1.InstanceResources", ...resources };
  return { snapshot, problems };
}
