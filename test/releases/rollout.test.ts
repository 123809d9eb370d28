import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ConnectError, createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { describe, type Fleet, startFleet } from "../../bench/fleet/fleet.js";
import { RolloutServerState, RolloutService, RolloutState, type Rollout } from "../../gen/myosicam/panel/v1/rollout_pb.js";
import { ServerService } from "../../gen/myosicam/panel/v1/server_pb.js";
import { freePort } from "../../services/lib/embedded-postgres.js";
import { generateReleaseKeys } from "../../services/lib/releases/manifest.js";
import { makeTempDir } from "../helpers/cli.js";
import { eventually } from "../helpers/eventually.js";
import { writeRelease } from "../helpers/releases.js";
import { operatorTransport, roomForFleet, startUpProcess, type UpProcess } from "../helpers/up-process.js";

/**
 * A staged rollout over 20 emulated agents on `myosicam up`: the canary, then batches of 25 %;
 * two servers whose upgrade fails (reported rolled back, as the agent does) halt it past the
 * threshold, naming them and why; resumed, it completes; rolled back, every server it changed
 * returns to the version it ran before.
 */
const test = suite("staged rollouts over emulated agents");

const agents = 20;
const failing = ["roll-03", "roll-08"];
let stack: UpProcess;
let fleet: Fleet | undefined;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
const keys = generateReleaseKeys();

test.before(async () => {
  dir = await makeTempDir("rollout");
  const publicKey = join(dir.path, "release-public.pem");
  await writeFile(publicKey, keys.publicPem);
  stack = await startUpProcess(
    "rollout",
    {
      PANEL_PORT: String(await freePort()),
      ADMIN_PORT: String(await freePort()),
      AGENT_HEARTBEAT_INTERVAL_SECONDS: "2",
      REGISTRATION_FAILURES_PER_MINUTE: "10000",
      AGENT_RELEASE_PUBLIC_KEY_FILE: publicKey,
    },
    roomForFleet,
  );
});
test.after(async () => {
  await fleet?.stop();
  await stack?.stop();
  await dir?.remove();
});

/** Uploads a signed release of `version` through the CLI, as an operator does. */
async function upload(version: string): Promise<void> {
  const release = await writeRelease(join(dir.path, version), { version, executable: Buffer.from(`#!/bin/sh\n# agent ${version}\n`), keys });
  const res = await stack.cli(["release", "upload", release]);
  assert.is(res.code, 0, res.stderr);
  assert.match(res.stdout, new RegExp(`agent ${version.replaceAll(".", "\\.")} for linux-x64: stored`));
}

test("a rollout halts past its failure threshold naming the servers, completes once resumed, and rolls back to the previous version", () =>
  // uvu cannot print a ConnectError: one escaping is rethrown as a plain Error with its message.
  haltResumeRollBack().catch((err: unknown) => {
    const panelErrors = stack.up
      .stderr()
      .split("\n")
      .filter((l) => /"level":(50|60)/.test(l))
      .slice(-3)
      .join("\n");
    throw err instanceof ConnectError ? new Error(`${err.message}\npanel errors:\n${panelErrors}`) : err;
  }));

async function haltResumeRollBack(): Promise<void> {
  const transport = await operatorTransport(stack);
  const servers = createClient(ServerService, transport);
  const rollouts = createClient(RolloutService, transport);
  const seeds = [];
  for (let i = 0; i < agents; i++) {
    const name = `roll-${String(i).padStart(2, "0")}`;
    seeds.push({ name, installToken: (await servers.addServer({ name })).bootstrap!.installToken });
  }
  fleet = await startFleet({
    url: stack.report.listeners.panel.url,
    ca: stack.ca,
    agents: seeds,
    workers: 2,
    rampPerSecond: 20,
    behaviour: { heartbeatSeconds: 2, syncSeconds: 600, instances: [1, 1], accounts: [2, 3], failUpgradesOn: failing },
    deadlineMs: 10 * 60_000,
  });
  const f = fleet;
  await f.until("every agent synced with its stream open", (t) => t.synced >= agents && t.streamsOpen === agents, 120_000);

  const refused = await rollouts.startRollout({ version: "0.1.1" }).catch((e: unknown) => ConnectError.from(e));
  assert.instance(refused, ConnectError);
  assert.match(
    (refused as ConnectError).rawMessage,
    /agent 0\.1\.1 is not uploaded for roll-00 \(linux-x64\).*release upload/,
    (refused as ConnectError).rawMessage,
  );
  await upload("0.1.1");

  const get = async (id: string) => (await rollouts.getRollout({ id })).rollout!;
  const settled = (r: Rollout) => r.sent === 0;
  const { rollout: started } = await rollouts.startRollout({ version: "0.1.1", canary: 1, batchPercent: 25, maxFailures: 1 });
  assert.is(started!.total, agents);
  assert.is(started!.batchesSent, 1, "the canary goes out at once");
  const halted = await eventually(
    () => get(started!.id),
    (r) => r.state === RolloutState.HALTED && settled(r),
    `the rollout to halt; ${describe(f.totals())}`,
    90_000,
  );
  // Canary roll-00; batch 1: roll-01…05 (roll-03 fails, within the threshold); batch 2: roll-06…10 (roll-08 fails: halted).
  assert.equal([halted.succeeded, halted.failed, halted.waiting, halted.batchesSent], [9, 2, 9, 3]);
  assert.match(halted.haltedReason, /2 servers failed \(more than 1 allowed\)/);
  for (const name of failing) assert.match(halted.haltedReason, new RegExp(`${name}: upgrade_rolled_back: agent 0\\.1\\.1 was rolled back to 0\\.1\\.0`));
  const { servers: detail } = await rollouts.getRollout({ id: started!.id });
  assert.equal(
    detail.filter((s) => s.state === RolloutServerState.FAILED).map((s) => s.serverName),
    failing,
  );

  await rollouts.resumeRollout({ id: started!.id });
  const completed = await eventually(
    () => get(started!.id),
    (r) => r.state === RolloutState.COMPLETED,
    `the resumed rollout to complete; ${describe(f.totals())}`,
    90_000,
  );
  assert.equal([completed.succeeded, completed.failed, completed.waiting, completed.sent], [18, 2, 0, 0]);
  const versions = async () => (await servers.listServers({ pageSize: 100 })).servers.map((s) => [s.name, s.agentVersion]);
  for (const [name, version] of await versions()) assert.is(version, failing.includes(name!) ? "0.1.0" : "0.1.1", name);

  const list = await stack.cli(["rollout", "list"]);
  assert.is(list.code, 0, list.stderr);
  assert.match(list.stdout, new RegExp(`rollout ${started!.id} to 0\\.1\\.1: completed — 18/20 upgraded, 0 in progress, 0 waiting, 2 failed`));

  // Back to the previous version: refused until that release is uploaded too.
  const notUploaded = await rollouts.rollBackRollout({ id: started!.id }).catch((e: unknown) => ConnectError.from(e));
  assert.match((notUploaded as ConnectError).rawMessage, /agent 0\.1\.0 is not uploaded/);
  await upload("0.1.0");
  const { rollout: back } = await rollouts.rollBackRollout({ id: started!.id, batchPercent: 50 });
  assert.is(back!.rollbackOf, started!.id);
  assert.is(back!.total, 18, "the servers it changed (the two that failed still run 0.1.0)");
  await eventually(
    () => get(back!.id),
    (r) => r.state === RolloutState.COMPLETED,
    `the roll back to complete; ${describe(f.totals())}`,
    90_000,
  );
  for (const [name, version] of await versions()) assert.is(version, "0.1.0", name);

  // Followed from the command line (WatchRollout): an ended rollout is printed and the exit code says how it ended.
  const followed = await stack.cli(["rollout", "show", back!.id, "--follow"]);
  assert.is(followed.code, 0, followed.stderr);
  assert.match(followed.stdout, /roll-00: succeeded \(0\.1\.1 → 0\.1\.0\)/);
  assert.match(followed.stdout, new RegExp(`rollout ${back!.id} to previous: completed — 18/18 upgraded`));
  const withFailures = await stack.cli(["rollout", "show", started!.id, "--follow"]);
  assert.is(withFailures.code, 1, "two servers failed: exit 1");
  assert.match(withFailures.stdout, /roll-03: failed \(0\.1\.0 → 0\.1\.1\) — upgrade_rolled_back/);
}

test.run();
