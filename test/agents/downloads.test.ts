import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { connect } from "node:http2";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { makeTempDir } from "../helpers/cli.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("the gated agent download");

let panel: PanelHost;
let artifacts: Awaited<ReturnType<typeof makeTempDir>>;
const artifact = randomBytes(64 * 1024);

function download(path: string, token?: string, authorization = token ? `Bearer ${token}` : undefined): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const session = connect(panel.url, { ca: panel.ca });
    session.on("error", reject);
    const req = session.request({ ":path": path, ...(authorization ? { authorization } : {}) });
    const chunks: Buffer[] = [];
    let status = 0;
    req.on("response", (h) => (status = Number(h[":status"])));
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      session.close();
      resolve({ status, body: Buffer.concat(chunks) });
    });
    req.on("error", reject);
    req.end();
  });
}
const issue = async () => (await createInstallToken(panel.db, { server: `dl-${randomBytes(3).toString("hex")}`, createdBy: "test" })).token;
const lastAttempt = async () =>
  (await panel.db("download_attempts").orderBy("id", "desc").first()) as {
    outcome: string;
    reason: string;
    ip: string;
    hash_prefix: string | null;
    artifact: string;
  };

test.before(async () => {
  artifacts = await makeTempDir("artifacts");
  await mkdir(artifacts.path, { recursive: true });
  await writeFile(join(artifacts.path, "myosicam-agent-linux-x64"), artifact);
  panel = await startPanelHost("agents_downloads", { AGENT_ARTIFACT_DIR: artifacts.path, REGISTRATION_FAILURES_PER_MINUTE: "200" });
});
test.after(async () => {
  await panel.stop();
  await artifacts.remove();
});

test("a valid install token downloads the artifact, byte for byte, and the attempt is logged", async () => {
  const token = await issue();
  const res = await download("/install/agent/linux-x64", token);
  assert.is(res.status, 200);
  assert.ok(res.body.equals(artifact));
  const attempt = await lastAttempt();
  assert.equal([attempt.outcome, attempt.reason, attempt.artifact, attempt.ip], ["accepted", "ok", "linux-x64", "127.0.0.1"]);
  assert.is(attempt.hash_prefix?.length, 8);
});

test("missing, unknown, expired and consumed tokens get 401 and not one byte of the artifact", async () => {
  const expired = await issue();
  await panel
    .db("install_tokens")
    .update({ expires_at: panel.db.raw("now() - interval '1 second'") })
    .whereRaw("expires_at > now()");
  const consumed = await issue();
  await panel.db("install_tokens").update({ consumed_at: panel.db.fn.now() }).whereNull("consumed_at").whereRaw("expires_at > now()");
  for (const [token, reason] of [
    [undefined, "missing_token"],
    ["e".repeat(64), "unknown_token"],
    [expired, "expired"],
    [consumed, "consumed"],
  ] as const) {
    const res = await download("/install/agent/linux-x64", token);
    assert.is(res.status, 401, reason);
    assert.not.ok(res.body.includes(artifact.subarray(0, 32)), `${reason}: no artifact bytes`);
    assert.ok(res.body.length < 300, `${reason}: only the refusal`);
    const attempt = await lastAttempt();
    assert.equal([attempt.outcome, attempt.reason], ["refused", reason]);
  }
});

test("an unknown target or a missing build is 404 with what to do, after the token was checked", async () => {
  const token = await issue();
  const odd = await download("/install/agent/windows-x64", token);
  assert.is(odd.status, 404);
  assert.match(odd.body.toString(), /available: linux-x64, linux-arm64/);
  const arm = await download("/install/agent/linux-arm64", token);
  assert.is(arm.status, 404);
  assert.match(arm.body.toString(), /npm run build:agent/);
  assert.is((await lastAttempt()).reason, "artifact_missing");
});

test("the token never reaches the log", async () => {
  const token = await issue();
  await download("/install/agent/linux-x64", token);
  assert.not.ok(panel.logs.text().includes(token));
});

test("the Bearer scheme and the token's hex are read in any case", async () => {
  const token = await issue();
  const upper = await download("/install/agent/linux-x64", token, `Bearer ${token.toUpperCase()}`);
  assert.is(upper.status, 200);
  const lower = await download("/install/agent/linux-x64", token, `bearer ${token}`);
  assert.is(lower.status, 200);
  const bad = await download("/install/agent/linux-x64", undefined, `Bearer ${"Z".repeat(64)}`);
  assert.is(bad.status, 401);
  assert.is((await lastAttempt()).reason, "malformed_token");
});

// Last in this file: it leaves this address over the limit.
test("failed downloads from one address are throttled (429), and what the limit refuses is recorded on one row", async () => {
  const before = Number((await panel.db("download_attempts").where({ outcome: "refused" }).count({ n: "*" }))[0]!.n);
  for (let i = 0; i < 200 - before; i++) assert.is((await download("/install/agent/linux-x64", "f".repeat(64))).status, 401);
  for (let i = 0; i < 30; i++) assert.is((await download("/install/agent/linux-x64", "f".repeat(64))).status, 429);
  const throttled = await panel.db("download_attempts").where({ reason: "rate_limited" });
  assert.is(throttled.length, 1, "one row for the 30 throttled attempts");
  assert.is(throttled[0].repeats, 29);
  const token = await issue();
  assert.is((await download("/install/agent/linux-x64", token)).status, 429, "throttled even with a good token, for a minute");
});

test.run();
