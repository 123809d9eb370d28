/**
 * What a simulated agent reports about its OScam instances: a few instances with 50–500 accounts
 * each, of the shapes real oscam.user files have, the same for the same seed (so a scheduled sync
 * sends the same content hash and the panel needs no snapshot again).
 */
import { createHash } from "node:crypto";
import { clone, create, toBinary } from "@bufbuild/protobuf";
import { type AccountChange, AccountOperation } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { AccountSchema, type InstanceSnapshot, InstanceSnapshotSchema, SettingSchema } from "../../gen/myosicam/agent/v1/snapshot_pb.js";

/** A small deterministic generator (mulberry32): the same seed gives the same fleet. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const between = (random: () => number, [low, high]: [number, number]) => low + Math.floor(random() * (high - low + 1));

const caids = ["0963", "098C", "09C4", "1830", "0D96", "0500"];

/** The instances of one simulated agent, each with its content hash set. */
export function instanceSnapshots(seed: number, instances: [number, number], accounts: [number, number]): InstanceSnapshot[] {
  const random = seededRandom(seed);
  const count = between(random, instances);
  return Array.from({ length: count }, (_, i) => {
    const name = i === 0 ? "main" : `oscam-${i + 1}`;
    const dir = i === 0 ? "/etc/oscam" : `/etc/oscam-${i + 1}`;
    const snapshot = create(InstanceSnapshotSchema, {
      ref: { name, contentHash: "" },
      configDir: dir,
      workingDir: dir,
      pidFile: `/run/oscam${i === 0 ? "" : `-${i + 1}`}.pid`,
      version: "2.26.05-11960",
      config: {
        readerCount: between(random, [1, 4]),
        ports: [{ protocol: "newcamd", port: 15000 + i, ssl: false, caid: caids[i % caids.length]! }],
        settings: [
          { section: "global", key: "logfile", value: "/var/log/oscam/oscam.log" },
          { section: "webif", key: "httpport", value: String(8888 + i) },
        ],
      },
      accounts: Array.from({ length: between(random, accounts) }, (_, n) => {
        const caid = caids[n % caids.length]!;
        const year = 2026 + Math.floor(random() * 3);
        return {
          user: `${name}-user${n}`,
          password: `pw${Math.floor(random() * 1e9).toString(36)}`,
          enabled: random() > 0.05,
          groups: [1 + (n % 8)],
          caid,
          ident: `${caid}:000000`,
          expiryDate: random() > 0.2 ? `${year}-${String(1 + (n % 12)).padStart(2, "0")}-28` : "",
          description: `box ${n} on ${name}`,
        };
      }),
      webif: { host: "127.0.0.1", port: 8888 + i, ssl: false, reachable: true, username: "admin", password: "webif-secret", readOnly: false },
      runtime: { running: true, pid: 1000 + i, uptimeSeconds: BigInt(3600 + Math.floor(random() * 86400)) },
      resources: { cpuPercent: random() * 5, rssMb: 20 + random() * 30, diskMb: 5 + random() * 10 },
    });
    snapshot.ref!.contentHash = createHash("sha256").update(toBinary(InstanceSnapshotSchema, snapshot)).digest("hex");
    return snapshot;
  });
}

/**
 * An instance's snapshot after account changes, as the agent would read its edited oscam.user
 * back: the fields a snapshot models (pwd, group, caid, ident, expdate, description, disabled)
 * are set, any other key is kept among the account's extra settings; the content hash is new.
 */
export function withAccountChanges(snapshot: InstanceSnapshot, changes: readonly AccountChange[]): InstanceSnapshot {
  const next = clone(InstanceSnapshotSchema, snapshot);
  for (const change of changes) {
    const at = next.accounts.findIndex((a) => a.user === change.user);
    if (change.operation === AccountOperation.DELETE) {
      if (at >= 0) next.accounts.splice(at, 1);
      continue;
    }
    if (at < 0 && change.operation !== AccountOperation.ADD) continue;
    const account = at >= 0 ? next.accounts[at]! : create(AccountSchema, { user: change.user, enabled: true });
    if (at < 0) next.accounts.push(account);
    if (change.operation === AccountOperation.DISABLE) account.enabled = false;
    if (change.operation === AccountOperation.ENABLE) account.enabled = true;
    for (const { key, value } of change.set) {
      if (key === "pwd") account.password = value;
      else if (key === "group") account.groups = value.split(",").map(Number).filter(Number.isInteger);
      else if (key === "caid") account.caid = value;
      else if (key === "ident") account.ident = value;
      else if (key === "expdate") account.expiryDate = value;
      else if (key === "description") account.description = value;
      else if (key === "disabled") account.enabled = value !== "1";
      else account.extra = [...account.extra.filter((s) => s.key !== key), create(SettingSchema, { key, value })];
    }
    for (const key of change.unset) account.extra = account.extra.filter((s) => s.key !== key);
  }
  next.ref!.contentHash = "";
  next.ref!.contentHash = createHash("sha256").update(toBinary(InstanceSnapshotSchema, next)).digest("hex");
  return next;
}
