import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, readlink, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { zstdCompressSync } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentService, type Command, CommandKind, CommandSchema, type DownloadReleaseRequest } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { generateReleaseKeys, manifestBytes, manifestFormat, signManifest } from "../../services/lib/releases/manifest.js";
import { upgradeAgent } from "../../agent/upgrade.js";
import { makeTempDir } from "../helpers/cli.js";
import { captureLogs } from "../helpers/log-capture.js";

const test = suite("the agent's release download: a cut or refused download resumes where it stopped");

const keys = generateReleaseKeys();
const executable = randomBytes(3 * 1024 * 1024 + 5);
const compressed = zstdCompressSync(executable);
const chunkBytes = 256 * 1024;
const chunks = Array.from({ length: Math.ceil(compressed.length / chunkBytes) }, (_, i) => compressed.subarray(i * chunkBytes, (i + 1) * chunkBytes));
const manifest = manifestBytes({
  format: manifestFormat,
  version: "0.2.0",
  builtAt: "2026-12-03T00:00:00.000Z",
  artifacts: [
    { target: "linux-x64", file: "myosicam-agent-linux-x64", sha256: createHash("sha256").update(executable).digest("hex"), size: executable.length },
  ],
});
const header = { manifest, signature: signManifest(manifest, keys.privatePem), encoding: "zstd", compressedSize: BigInt(compressed.length) };

const upgradeCommand = (): Command =>
  create(CommandSchema, { id: "cmd-1", kind: CommandKind.UPGRADE_AGENT, payload: { case: "upgradeAgent", value: { version: "0.2.0" } } });

/** Runs `use` with an agent home as the bootstrap leaves it (0.1.0 current), removed after. */
async function inAgentHome(use: (home: string) => Promise<void>): Promise<void> {
  const dir = await makeTempDir("agent-download");
  try {
    const home = join(dir.path, "home");
    await mkdir(join(home, "versions/0.1.0"), { recursive: true });
    await writeFile(join(home, "versions/0.1.0/myosicam-agent"), "old");
    await symlink("versions/0.1.0", join(home, "current"));
    await use(home);
  } finally {
    await dir.remove();
  }
}

/**
 * A panel's DownloadRelease that behaves as `plan` says per call: `cutAfter` chunks and then the
 * connection breaks, or `busy` (refused with a retry hint), or the whole release.
 */
function panelServing(plan: Array<{ cutAfter?: number; busy?: boolean; header?: typeof header }>) {
  const calls: DownloadReleaseRequest[] = [];
  /** The deadline each call carried (the agent bounds attempts itself, with no call deadline). */
  const deadlines: Array<number | undefined> = [];
  const transport = createRouterTransport(
    ({ service }) => {
      service(AgentService, {
        async *downloadRelease(req, ctx) {
          const step = plan[calls.length] ?? {};
          calls.push(req);
          deadlines.push(ctx.timeoutMs());
          if (step.busy)
            throw new ConnectError("8 agents are downloading a release; try again in 15 s", Code.Unavailable, new Headers({ "retry-after": "15" }));
          yield { message: { case: "header", value: step.header ?? header } };
          let sent = 0;
          for (const chunk of chunks.slice(req.fromChunk)) {
            if (step.cutAfter !== undefined && sent === step.cutAfter) throw new ConnectError("the connection was cut", Code.Unavailable);
            yield { message: { case: "chunk", value: chunk } };
            sent++;
          }
        },
      });
    },
    // As the agent's own transport (agent/panel.ts): a download must not inherit its 30 s default.
    { transport: { defaultTimeoutMs: 30_000 } },
  );
  return { client: createClient(AgentService, transport), calls, deadlines };
}

/** Runs the upgrade command against `panel` as an agent of 0.1.0 at `home`; waits are recorded, not slept. */
function upgradeFrom(panel: ReturnType<typeof panelServing>, home: string, log = captureLogs().log, waits: number[] = []) {
  return upgradeAgent(upgradeCommand(), {
    client: () => panel.client,
    log,
    home,
    publicKey: keys.publicPem,
    version: "0.1.0",
    target: "linux-x64",
    sleep: async (ms) => {
      waits.push(ms);
    },
  });
}

test("a download cut twice resumes from the next chunk each time, waits for a busy panel's hint, and installs the signed executable", () =>
  inAgentHome(async (home) => {
    const panel = panelServing([{ cutAfter: 3 }, { busy: true }, { cutAfter: 2 }, {}]);
    const waits: number[] = [];
    const logs = captureLogs();
    const outcome = await upgradeFrom(panel, home, logs.log, waits);
    assert.equal(outcome, { restart: true, detail: "switched to 0.2.0; restarting" });
    assert.equal(
      panel.calls.map((c) => c.fromChunk),
      [0, 3, 3, 5],
      "each call resumes after the chunks already written",
    );
    assert.equal(panel.deadlines, [undefined, undefined, undefined, undefined], "no call deadline: each attempt has its own 5 minutes");
    assert.ok(waits[1]! >= 15_000, `the busy panel's retry-after is honoured (waited ${waits[1]} ms)`);
    assert.ok((await readFile(join(home, "versions/0.2.0/myosicam-agent"))).equals(executable), "the executable is the signed one");
    assert.is(await readlink(join(home, "current")), "versions/0.2.0");
    assert.equal(await readdir(join(home, "versions/0.2.0")), ["myosicam-agent"], "no partial file is left");
    assert.is(logs.lines().filter((l) => l.msg === "the release download was interrupted; resuming it").length, 3);
  }));

test("a release whose signed manifest changed between attempts is downloaded again from its first chunk", () =>
  inAgentHome(async (home) => {
    // The same executable, built again: another manifest (build time) and so another signature.
    const rebuilt = manifestBytes({ ...JSON.parse(manifest.toString("utf8")), builtAt: "2026-12-04T00:00:00.000Z" });
    const other = { ...header, manifest: rebuilt, signature: signManifest(rebuilt, keys.privatePem) };
    const panel = panelServing([{ cutAfter: 2 }, { header: other }, { header: other }]);
    const logs = captureLogs();
    const outcome = await upgradeFrom(panel, home, logs.log);
    assert.equal(outcome, { restart: true, detail: "switched to 0.2.0; restarting" });
    assert.equal(
      panel.calls.map((c) => c.fromChunk),
      [0, 2, 0],
      "resumed, then started over when the manifest was another",
    );
    assert.ok((await readFile(join(home, "versions/0.2.0/myosicam-agent"))).equals(executable), "the executable is the signed one, whole");
    assert.ok(logs.lines().some((l) => l.msg === "the release's manifest changed while downloading; starting the download again"));
  }));

test("a download that keeps failing ends as download_failed after its attempts, with the panel's words, and leaves nothing", () =>
  inAgentHome(async (home) => {
    const panel = panelServing(Array.from({ length: 20 }, () => ({ cutAfter: 0 })));
    const outcome = await upgradeFrom(panel, home);
    assert.equal(outcome, { succeeded: false, failureCode: "download_failed", detail: "the release could not be downloaded: the connection was cut" });
    assert.is(panel.calls.length, 8, "bounded attempts");
    assert.equal(await readdir(join(home, "versions/0.2.0")), [], "no partial file is left");
    assert.is(await readlink(join(home, "current")), "versions/0.1.0", "nothing switched");
  }));

test.run();
