import { createHash, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { zstdDecompressSync } from "node:zlib";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentHealth } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { createCommands } from "../../services/agents/commands.js";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { listReleases, uploadRelease } from "../../services/agents/releases.js";
import { advanceRollout, selectRollout, selectRolloutServers, startRollout } from "../../services/agents/rollouts.js";
import { generateReleaseKeys } from "../../services/lib/releases/manifest.js";
import { makeTempDir } from "../helpers/cli.js";
import { eventually } from "../helpers/eventually.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";
import { writeRelease } from "../helpers/releases.js";

const test = suite("agent releases on the panel: upload, download over the signed channel, upgrade commands, compatibility");

let panel: PanelHost;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
const keys = generateReleaseKeys();
const crypto = () => createClient(CryptoService, panel.host.transportFor(CryptoService));
const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
/** A rollout to 0.1.1 of the named servers: the canary, then half of them at a time, no failure allowed. */
const rolloutOf = (serverIds: string[]) => ({
  version: "0.1.1",
  serverIds,
  named: true,
  canary: 1,
  batchPercent: 50,
  maxFailures: 0,
  pauseOnFailure: false,
  createdBy: "test",
});
const executable = randomBytes(3 * 1024 * 1024 + 17); // more than one stored chunk, even compressed

test.before(async () => {
  dir = await makeTempDir("releases");
  panel = await startPanelHost("releases", {});
  await panel.setLicense(10);
});
test.after(async () => {
  await panel.stop();
  await dir.remove();
});

test("a signed release is stored compressed and its upload is idempotent; other content under the same version is refused", async () => {
  const release = await writeRelease(join(dir.path, "r1"), { version: "0.1.1", executable, keys });
  const first = await uploadRelease(panel.db, release, keys.publicPem, "test");
  assert.equal(
    first.map((o) => [o.version, o.target, o.stored, o.size]),
    [["0.1.1", "linux-x64", true, executable.length]],
  );
  const again = await uploadRelease(panel.db, release, keys.publicPem, "test");
  assert.is(again[0]!.stored, false, "the same content again changes nothing");
  const listed = await listReleases(panel.db);
  assert.equal(
    listed.map((r) => [r.version, r.target, r.encoding, r.keyId]),
    [["0.1.1", "linux-x64", "zstd", keys.keyId]],
  );
  const other = await writeRelease(join(dir.path, "r1-other"), { version: "0.1.1", executable: Buffer.from("#!/bin/sh\nexit 0\n"), keys });
  await uploadRelease(panel.db, other, keys.publicPem, "test").then(
    () => assert.unreachable("a version is never replaced"),
    (err: Error) => assert.match(err.message, /already stored with other content/),
  );
});

test("an unsigned, wrongly signed or altered release is refused before anything is stored", async () => {
  const unsigned = await writeRelease(join(dir.path, "unsigned"), { version: "0.1.5", executable, keys, sign: false });
  await uploadRelease(panel.db, unsigned, keys.publicPem, "test").then(
    () => assert.unreachable(),
    (err: Error) => assert.match(err.message, /manifest\.sig is missing: sign the release first/),
  );
  const foreign = await writeRelease(join(dir.path, "foreign"), { version: "0.1.5", executable, keys: generateReleaseKeys() });
  await uploadRelease(panel.db, foreign, keys.publicPem, "test").then(
    () => assert.unreachable(),
    (err: Error) => assert.match(err.message, new RegExp(`not signed by release key ${keys.keyId}`)),
  );
  const altered = await writeRelease(join(dir.path, "altered"), { version: "0.1.5", executable, keys });
  await writeFile(join(altered, "myosicam-agent-linux-x64"), Buffer.concat([executable.subarray(0, -1), Buffer.from([executable.at(-1)! ^ 1])]));
  await uploadRelease(panel.db, altered, keys.publicPem, "test").then(
    () => assert.unreachable(),
    (err: Error) => assert.match(err.message, /does not have the SHA-256 the manifest lists/),
  );
  assert.not.ok((await listReleases(panel.db)).some((r) => r.version === "0.1.5"));
});

test("an approved agent downloads a release over its signed channel: the signed header, then the compressed executable", async () => {
  const agent = await panel.enroll("dl-1");
  const messages = [];
  for await (const m of agent.client.downloadRelease({ version: "0.1.1", target: "linux-x64" })) messages.push(m);
  const [header, ...chunks] = messages;
  assert.is(header!.message.case, "header");
  const h = header!.message.value as { manifest: Uint8Array; signature: string; encoding: string; compressedSize: bigint };
  assert.is(h.encoding, "zstd");
  assert.match(Buffer.from(h.manifest).toString(), /"version": "0.1.1"/);
  const compressed = Buffer.concat(chunks.map((c) => c.message.value as Uint8Array));
  assert.is(BigInt(compressed.length), h.compressedSize);
  assert.ok(chunks.length > 1, "more than one chunk");
  const bytes = zstdDecompressSync(compressed);
  assert.is(createHash("sha256").update(bytes).digest("hex"), createHash("sha256").update(executable).digest("hex"));
  // A cut download resumes: from chunk 1 on, the header again and the chunks after the first.
  const resumed = [];
  for await (const m of agent.client.downloadRelease({ version: "0.1.1", target: "linux-x64", fromChunk: 1 })) resumed.push(m);
  assert.is(resumed[0]!.message.case, "header");
  assert.equal(
    Buffer.concat(resumed.slice(1).map((c) => c.message.value as Uint8Array)),
    compressed.subarray((chunks[0]!.message.value as Uint8Array).length),
    "the chunks after the first, and nothing else",
  );
  const missing = await failure(agent.client.downloadRelease({ version: "9.9.9", target: "linux-x64" })[Symbol.asyncIterator]().next());
  assert.is(missing?.code, Code.NotFound);
  assert.match(missing!.rawMessage, /agent 9\.9\.9 for linux-x64 is not uploaded/);
});

test("an upgrade is refused for servers whose release is not uploaded, naming them and what to run", async () => {
  const agent = await panel.enroll("up-missing");
  const err = await failure(
    createCommands(panel.db, crypto(), { serverIds: [agent.id], kind: "upgrade_agent", payload: { version: "0.2.0" }, createdBy: "test" }),
  );
  assert.is(err?.code, Code.FailedPrecondition);
  assert.match(err!.rawMessage, /agent 0\.2\.0 is not uploaded for up-missing \(linux-x64\); upload it with `npx myosicam release upload <dir>`/);
  const bad = await failure(
    createCommands(panel.db, crypto(), { serverIds: [agent.id], kind: "upgrade_agent", payload: { version: "latest" }, createdBy: "test" }),
  );
  assert.is(bad?.code, Code.InvalidArgument);
  const refusedLater = await failure(
    createCommands(panel.db, crypto(), { serverIds: [agent.id], kind: "upgrade_agent", payload: { version: "0.9.0" }, createdBy: "test" }),
  );
  assert.is(refusedLater?.code, Code.FailedPrecondition);
  assert.match(refusedLater!.rawMessage, /cannot upgrade to 0\.9\.0: agent 0\.9\.0 is newer than this panel supports/);
});

test("the first heartbeat in the asked version marks the upgrade succeeded; one in another version does not", async () => {
  const agent = await panel.enroll("up-1");
  const [command] = await createCommands(panel.db, crypto(), {
    serverIds: [agent.id],
    kind: "upgrade_agent",
    payload: { version: "0.1.1" },
    createdBy: "test",
  });
  const status = async () => (await panel.db("commands").where({ id: command!.id }).first()).status;
  await agent.client.heartbeat({ uptimeSeconds: 1n, health: AgentHealth.OK, agentVersion: "0.1.0" });
  assert.is(await status(), "pending");
  await agent.client.heartbeat({ uptimeSeconds: 2n, health: AgentHealth.OK, agentVersion: "0.1.1" });
  const row = await panel.db("commands").where({ id: command!.id }).first();
  assert.equal([row.status, row.result], ["succeeded", "the agent runs 0.1.1 and heartbeats"]);
});

test("rollouts: a server offline at its turn is sent last with a week to return; one that goes offline during its upgrade does not hold the next batch; both done when they heartbeat in the new version", async () => {
  const agents: Array<Awaited<ReturnType<PanelHost["enroll"]>>> = [];
  for (const name of ["ro-1", "ro-2", "ro-3", "ro-4"]) agents.push(await panel.enroll(name));
  const [ro1, ro2, ro3, ro4] = agents;
  const beat = (a: (typeof agents)[number], version: string) => a.client.heartbeat({ uptimeSeconds: 1n, health: AgentHealth.OK, agentVersion: version });
  await panel.db("servers").where({ id: ro4!.id }).update({ status: "unreachable" });
  // A server added but never installed cannot take an upgrade: named, it is refused in words.
  const { info } = await createInstallToken(panel.db, { server: "ro-new", createdBy: "test" });
  const notInstalled = await failure(startRollout(panel.db, crypto(), rolloutOf([info.serverId, ro1!.id])));
  assert.is(notInstalled?.code, Code.FailedPrecondition);
  assert.match(notInstalled!.rawMessage, /ro-new \(no agent installed yet\) cannot take an upgrade; leave it out/);
  const id = await startRollout(panel.db, crypto(), rolloutOf(agents.map((a) => a.id)));
  const rows = async () => Object.fromEntries((await selectRolloutServers(panel.db, id)).map((r) => [r.server_name, [r.state, r.online_at_send]]));
  /**
   * Advances the rollout until `check` holds. The panel's own ticker advances it every 2 s too, and
   * a call finding it busy skips: a pass of the ticker that read the servers just before what the
   * test changed then decides without it, and the next pass sees it.
   */
  const advanceUntil = (check: (now: Awaited<ReturnType<typeof rows>>) => boolean, what: string) =>
    eventually(
      async () => {
        await advanceRollout(panel.db, crypto(), id);
        return rows();
      },
      check,
      what,
    );
  assert.equal((await rows())["ro-1"], ["sent", true], "the canary: the first online server");
  // The canary goes offline during its upgrade: the next batch does not wait for it.
  await panel.db("servers").where({ id: ro1!.id }).update({ status: "unreachable" });
  let now = await advanceUntil((r) => r["ro-2"]![0] === "sent", "the next batch sent");
  assert.equal(now["ro-1"], ["sent", false]);
  assert.equal([now["ro-2"]![0], now["ro-3"]![0]], ["sent", "sent"], "the next batch went out");
  const deadline = (await panel.db("commands").where({ server_id: ro1!.id, kind: "upgrade_agent" }).first()).deadline as Date;
  assert.ok(deadline.getTime() > Date.now() + 6 * 86400_000, "a week to return");
  await beat(ro2!, "0.1.1");
  await beat(ro3!, "0.1.1");
  now = await advanceUntil((r) => r["ro-4"]![0] === "sent", "the last server sent");
  assert.equal(now["ro-4"], ["sent", false], "the server that was offline all along goes last, with a week to return");
  assert.is((await selectRollout(panel.db, id))!.state, "running", "not done while two servers have not returned");
  await beat(ro1!, "0.1.1");
  await beat(ro4!, "0.1.1");
  await advanceUntil((r) => Object.values(r).every((state) => state[0] === "succeeded"), "every server succeeded");
  assert.is((await selectRollout(panel.db, id))!.state, "completed");
  assert.equal(
    Object.values(await rows()).map((r) => r[0]),
    ["succeeded", "succeeded", "succeeded", "succeeded"],
  );
});

test("agents outside the panel's version window are refused with the reason: registration (token kept) and heartbeats", async () => {
  const { token } = await createInstallToken(panel.db, { server: "too-new", createdBy: "test" });
  const refused = await failure(
    panel.registration().register({
      installToken: token,
      agentId: "4a4f6a5e-0b7c-4b1e-9d7e-2f1a0c3b5d6e",
      hostname: "too-new",
      ip: "192.0.2.1",
      os: "linux",
      osVersion: "test",
      arch: "x64",
      agentVersion: "0.3.0",
    }),
  );
  assert.is(refused?.code, Code.FailedPrecondition);
  assert.match(refused!.rawMessage, /agent 0\.3\.0 is newer than this panel supports \(0\.1\.0 accepts agents 0\.0\.x to 0\.2\.x\); upgrade the panel first/);
  const [attempt] = await panel.db("registration_attempts").orderBy("id", "desc").limit(1);
  assert.is(attempt.reason, "incompatible");
  assert.is((await panel.db("install_tokens").whereNull("consumed_at").where("server_id", attempt.server_id).count("* as n"))[0]!.n, "1", "the token is kept");

  const agent = await panel.enroll("old-beat");
  const beat = await failure(agent.client.heartbeat({ uptimeSeconds: 1n, health: AgentHealth.OK, agentVersion: "1.0.0" }));
  assert.is(beat?.code, Code.FailedPrecondition);
  assert.match(beat!.rawMessage, /agent 1\.0\.0 is newer than this panel supports/);
});

test.run();
