import { cp, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { toBinary, toJsonString } from "@bufbuild/protobuf";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { InstanceSnapshotSchema } from "../../gen/myosicam/agent/v1/snapshot_pb.js";
import { discoverInstances } from "../../agent/discovery/discover.js";
import { createResourceSampler } from "../../agent/discovery/resources.js";
import { buildSnapshot } from "../../agent/snapshot.js";
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

test.run();
