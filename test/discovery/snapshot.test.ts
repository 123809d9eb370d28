import { cp, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { toBinary, toJsonString } from "@bufbuild/protobuf";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { type Account, InstanceSnapshotSchema } from "../../gen/myosicam/agent/v1/snapshot_pb.js";
import { discoverInstances } from "../../agent/discovery/discover.js";
import { createResourceSampler } from "../../agent/discovery/resources.js";
import { buildSnapshot, snapshotAfterOwnChange } from "../../agent/snapshot.js";
import { leakedCanaries, plantCanaries } from "../helpers/canaries.js";
import { makeTempDir } from "../helpers/cli.js";

const fixtures = resolve(import.meta.dirname, "../fixtures/oscam");
const test = suite("snapshots: what leaves the server, and what never does");

let dir: Awaited<ReturnType<typeof makeTempDir>>;
let canaries: Map<string, string>;

async function snapshotOf(configDir: string) {
  const [instance] = await discoverInstances({ configDirs: [configDir], unitDirs: [], procRoot: join(dir.path, "no-proc") });
  return buildSnapshot(instance!, createResourceSampler(join(dir.path, "no-proc")));
}

test.before(async () => {
  dir = await makeTempDir("snapshot");
  canaries = await plantCanaries(join(dir.path, "main"));
});
test.after(async () => {
  await dir.remove();
});

test("no canary of oscam.server, oscam.conf secrets, unknown sections, commented-out blocks or CA files is in the snapshot", async () => {
  const { snapshot } = await snapshotOf(join(dir.path, "main"));
  const bytes = Buffer.from(toBinary(InstanceSnapshotSchema, snapshot)).toString("latin1") + toJsonString(InstanceSnapshotSchema, snapshot);
  assert.equal(leakedCanaries(canaries, bytes), []);
  assert.is(snapshot.config?.readerCount, 5, "the planted reader counts; none of its values travels");
});

test("the snapshot carries the accounts, ports without keys, the reader count, and the WebIF password only in its field", async () => {
  const { snapshot } = await snapshotOf(join(fixtures, "main"));
  assert.is(snapshot.accounts.length, 20);
  assert.is(snapshot.config?.readerCount, 4);
  const lr = snapshot.accounts.find((a) => a.user === "livingroom")!;
  assert.equal([lr.password, lr.enabled, lr.groups, lr.caid, lr.ident], ["lr-7Hq2x9vT", true, [1, 2], "0963,098C", "0963:000000;098C:000000"]);
  assert.equal(
    snapshot.config?.ports.filter((p) => p.protocol === "newcamd").map((p) => p.port),
    [15000, 15001],
  );
  assert.is(snapshot.webif?.password, "dev-webif-Pw!main-7f3c");
  const json = toJsonString(InstanceSnapshotSchema, snapshot);
  assert.is(json.split("dev-webif-Pw!main-7f3c").length - 1, 1, "the WebIF password appears once: in webif.password");
  assert.not.ok(json.includes("B046E005A5DFEED3FC5CDB0E680E"), "newcamd key");
  assert.not.ok(json.includes("2D92174098B27CF291D767688696"), "per-port DES key");
});

test("the content hash is stable for an unchanged instance and changes with an account", async () => {
  const a = await snapshotOf(join(fixtures, "main"));
  const b = await snapshotOf(join(fixtures, "main"));
  assert.is(a.snapshot.ref?.contentHash, b.snapshot.ref?.contentHash);
  const copy = join(dir.path, "main-copy");
  await cp(join(fixtures, "main"), copy, { recursive: true });
  const user = join(copy, "oscam.user");
  await writeFile(user, (await readFile(user, "utf8")).replace("pwd                           = br-Kd81mQzp", "pwd                           = changed"));
  const changed = await snapshotOf(copy);
  // Same content but another config dir would change the hash too, so compare with the copy before the edit.
  await writeFile(user, await readFile(join(fixtures, "main/oscam.user")));
  const unchangedCopy = await snapshotOf(copy);
  assert.is.not(changed.snapshot.ref?.contentHash, unchangedCopy.snapshot.ref?.contentHash);
});

test("after a change the agent made, the snapshot it works out from the last one has the hash a fresh read gives; any other difference gives none", async () => {
  const copy = join(dir.path, "main-own-change");
  await cp(join(fixtures, "main"), copy, { recursive: true });
  const user = join(copy, "oscam.user");
  const last = (await snapshotOf(copy)).snapshot;
  const original = await readFile(user, "utf8");
  // The change: a new password, a deleted account, a new account at the end.
  const edited = original
    .replace("pwd                           = lr-7Hq2x9vT", "pwd                           = lr-New-2")
    .replace(/\[account\]\nuser\s*= bedroom\n(?:.+\n)*\n/, "")
    .concat("\n[account]\nuser = newbox\npwd = nb-Secret-1\ngroup = 1\n");
  await writeFile(user, edited);
  const fresh = (await snapshotOf(copy)).snapshot;
  const accountOf = (name: string) => fresh.accounts.find((a) => a.user === name)!;
  const changed = new Map<string, Account | undefined>([
    ["livingroom", accountOf("livingroom")],
    ["bedroom", undefined],
    ["newbox", accountOf("newbox")],
  ]);
  const file = Buffer.from(edited);
  const next = snapshotAfterOwnChange(last, file, changed);
  assert.ok(next, "only the changed accounts differ");
  assert.is(next.ref!.contentHash, fresh.ref!.contentHash, "the hash the next sync reads");
  assert.is.not(next.ref!.contentHash, last.ref!.contentHash);
  assert.is(last.accounts.length, 20, "the last snapshot is left as it was");

  const without = (name: string) => new Map([...changed].filter(([user]) => user !== name));
  assert.is(snapshotAfterOwnChange(last, file, without("bedroom")), undefined, "a deletion the results do not show");
  assert.is(snapshotAfterOwnChange(last, file, without("newbox")), undefined, "a new account the results do not show");
  const otherPassword = new Map(changed).set("livingroom", { ...accountOf("livingroom"), password: "something else" });
  assert.is(snapshotAfterOwnChange(last, file, otherPassword), undefined, "an account the file does not hold as the result says");
  const handEdit = Buffer.from(edited.replace("kv-p0Lm3Rt6", "kv-by-hand"));
  assert.is(snapshotAfterOwnChange(last, handEdit, changed), undefined, "a hand edit of another account beside the change");
  const gone = new Map(changed).set("newbox", undefined);
  assert.is(snapshotAfterOwnChange(last, file, gone), undefined, "an account said deleted is still in the file");
  for (const garbage of [Buffer.from([0, 0xff, 0xfe, 0x5b, 0x0a]), Buffer.alloc(0), Buffer.from("[account]\nuser = a\n[account]\nuser = a\n")])
    assert.is(snapshotAfterOwnChange(last, garbage, changed), undefined, "a file that is not the change's");
});

test.run();
