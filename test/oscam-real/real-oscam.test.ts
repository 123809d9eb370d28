import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { create, toJson } from "@bufbuild/protobuf";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { applyAccounts } from "../../agent/apply/apply-accounts.js";
import { discoverInstances } from "../../agent/discovery/discover.js";
import { createResourceSampler } from "../../agent/discovery/resources.js";
import { currentRuntime } from "../../agent/discovery/runtime.js";
import { buildSnapshot } from "../../agent/snapshot.js";
import { AccountOperation, ApplyAccountsSchema } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { InstanceSnapshotSchema } from "../../gen/myosicam/agent/v1/snapshot_pb.js";
import { checkPayload } from "../../services/agents/commands.js";
import { freePort } from "../../services/lib/embedded-postgres.js";
import { makeTempDir } from "../helpers/cli.js";
import { eventually } from "../helpers/eventually.js";
import { type RealOscam, realOscamMissing, startRealOscam } from "../helpers/real-oscam.js";

const test = suite("against the real OScam 2.26.05 (OSCAM_BIN)");
const missing = realOscamMissing();
if (missing) console.log(`  skipped: ${missing}`);
const it = missing ? test.skip : test;

let dir: Awaited<ReturnType<typeof makeTempDir>>;
let oscam: RealOscam;
const names = ["living room", "a=b", "#hash", "[x]", "semi;colon", "Küche 東京", "x".repeat(63)];
const discover = async () => {
  const [instance] = await discoverInstances({ configDirs: [oscam.configDir], unitDirs: [], probeWebif: true });
  return instance!;
};

test.before(async () => {
  if (missing) return;
  dir = await makeTempDir("real-oscam");
  let users = "";
  for (const n of names) users += `[account]\nuser = ${n}\npwd = p\n\n`;
  // radegast is not compiled into this build: OScam ignores its section and opens no port.
  oscam = await startRealOscam(dir.path, {
    users,
    serverip: "0.0.0.0",
    // Three reader sections: one enabled, one disabled, one of a protocol OScam does not know (not loaded).
    server: [
      "[reader]\nlabel = net1\nprotocol = cccam\ndevice = 127.0.0.1,1\nuser = u\npassword = reader-secret\nenable = 1\n",
      "[reader]\nlabel = off1\nprotocol = cccam\ndevice = 127.0.0.1,2\nuser = u\npassword = reader-secret\nenable = 0\n",
      "[reader]\nlabel = odd\nprotocol = no-such-protocol\ndevice = 127.0.0.1,3\nenable = 1\n",
    ].join("\n"),
    extraConf: `[newcamd]\nport = ${await freePort()}@0963:000000\nkey = 0102030405060708091011121314\n\n[radegast]\nport = ${await freePort()}\n`,
  });
});
test.after(async () => {
  if (missing) return;
  await oscam.stop();
  await dir.remove();
});

it("OScam loads user names with spaces, =, #, [ ], ; and UTF-8; a command may name each, and an edit of one is loaded", async () => {
  const stats = await oscam.get("/oscamapi.html?part=userstats");
  for (const n of names) assert.ok(stats.includes(`<user name="${n}"`), `OScam loaded "${n}"`);
  for (const n of names) assert.is(checkPayload("apply_accounts", { changes: [{ operation: "ACCOUNT_OPERATION_DISABLE", user: n }] }).kind, "apply_accounts");
  const outcome = await applyAccounts(
    await discover(),
    create(ApplyAccountsSchema, { changes: [{ operation: AccountOperation.DISABLE, user: "living room" }] }),
  );
  assert.ok(outcome.succeeded, outcome.detail);
  await eventually(
    async () => oscam.log(),
    (log) => log.includes(`userdb reloaded: ${names.length} accounts loaded, 0 expired, 1 disabled`),
    "OScam to reload the users",
  );
});

it("a WebIF bound to 0.0.0.0 is reported on the address the agent reaches it on", async () => {
  const instance = await discover();
  assert.is(instance.webif.host, "127.0.0.1");
  assert.ok(instance.webif.answers);
  assert.equal(instance.problems, []);
});

it("ports of modules the running binary lacks are marked not compiled in", async () => {
  const { snapshot } = await buildSnapshot(await discover(), createResourceSampler());
  const byProtocol = new Map(snapshot.config!.ports.map((p) => [p.protocol, p]));
  assert.is(byProtocol.get("radegast")?.notCompiledIn, true);
  assert.is(byProtocol.get("newcamd")?.notCompiledIn, false);
  assert.match(oscam.log(), /section \[radegast\] is ignored \(support not compiled in\)/);
});

it("the snapshot says how many of the configured readers OScam loaded and enabled, and names none of them", async () => {
  const { snapshot } = await buildSnapshot(await discover(), createResourceSampler());
  // The file holds three sections; the one of an unknown protocol is neither counted nor loaded.
  assert.is(snapshot.config!.readerCount, 2);
  assert.is(snapshot.config!.readersLoaded, 2, "what the running OScam instantiated (its readerlist)");
  assert.is(snapshot.config!.readersEnabled, 1);
  const bytes = JSON.stringify(toJson(InstanceSnapshotSchema, snapshot));
  for (const secret of ["net1", "off1", "reader-secret"]) assert.not.ok(bytes.includes(secret), `${secret} left the host`);
});

it("a WebIF password OScam does not accept is a webif_auth_failed problem, though the WebIF answers", async () => {
  const conf = join(oscam.configDir, "oscam.conf");
  const original = await readFile(conf, "utf8");
  // The file now says another password than the one the running OScam loaded.
  await writeFile(conf, original.replace(`httppwd = ${oscam.password}`, "httppwd = not-what-oscam-loaded"));
  try {
    const instance = await discover();
    assert.ok(instance.webif.answers);
    assert.ok(
      instance.problems.some((p) => p.startsWith("webif_auth_failed: ")),
      instance.problems.join("; "),
    );
    const { snapshot } = await buildSnapshot(instance, createResourceSampler());
    assert.ok(snapshot.problems.some((p) => p.startsWith("webif_auth_failed: ")));
  } finally {
    await writeFile(conf, original);
  }
});

it("the runtime a heartbeat reports follows OScam: a restart's new pid, then stopped", async () => {
  const before = await currentRuntime(oscam);
  assert.is(before.running, true);
  assert.is(before.pid, oscam.pid);
  await oscam.restart();
  const after = await currentRuntime(oscam);
  assert.is(after.pid, oscam.pid);
  assert.is.not(after.pid, before.pid);
  await oscam.stop();
  assert.equal(await currentRuntime(oscam), { running: false });
  await oscam.restart();
});

test.run();
