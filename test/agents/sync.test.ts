import { createServer, type Server } from "node:http";
import { request as httpsRequest } from "node:https";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { SyncRequestSchema } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { purgeResourceSamples, storeSync } from "../../services/agents/sync.js";
import { instanceSnapshotsStored } from "../../services/lib/metrics.js";
import { createKeyring } from "../../services/lib/secrets/keyring.js";
import { leakedCanaries, plantCanaries } from "../helpers/canaries.js";
import { eventually } from "../helpers/eventually.js";
import { makeTempDir, runAgentCli, type CliProcess } from "../helpers/cli.js";
import { newKey } from "../helpers/keys.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("sync: the agent's snapshots reach the panel, and no secret leaves the server");

let panel: PanelHost;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
let proxy: Server;
let proxyUrl: string;
let agent: CliProcess;
let canaries: Map<string, string>;
/** Every byte the agent sent, as the HTTP layer saw it (a plain-HTTP hop in front of the panel). */
const captured: Buffer[] = [];
const syncRequests: number[] = [];
const keyring = createKeyring(newKey);
const open = (envelope: string, table: string, column: string, rowId: string) => keyring.open(envelope, { table, column, rowId }).plaintext.toString("utf8");
const configDir = () => join(dir.path, "oscam/main");
const env = { MYOSICAM_ALLOW_INSECURE: "1" };

const snapshotsStored = async () => (await instanceSnapshotsStored.get()).values[0]?.value ?? 0;
const syncLines = () =>
  agent
    .stderr()
    .split("\n")
    .filter((l) => l.includes('"msg":"synced with the panel"'));

test.before(async () => {
  dir = await makeTempDir("sync");
  canaries = await plantCanaries(configDir());
  panel = await startPanelHost("agents_sync", { AGENT_HEARTBEAT_INTERVAL_SECONDS: "1" });
  await panel.setLicense(10, 10);
  const target = new URL(panel.url);
  proxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      captured.push(Buffer.from(`${req.method} ${req.url}\n${JSON.stringify(req.headers)}\n`), body);
      if (req.url?.endsWith("/Sync")) syncRequests.push(body.length);
      const out = httpsRequest(
        { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers, ca: panel.ca },
        (upstream) => {
          res.writeHead(upstream.statusCode ?? 502, upstream.headers);
          upstream.pipe(res);
        },
      );
      out.on("error", () => res.destroy());
      out.end(body);
    });
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
  const { token } = await createInstallToken(panel.db, { server: "sync-1", createdBy: "test" });
  const reg = runAgentCli(["register", "--panel", proxyUrl, "--token-stdin", "--oscam-dir", configDir(), "--state-dir", join(dir.path, "state")], env, token);
  assert.is(await reg.exited, 0, reg.stderr());
  agent = runAgentCli(["run", "--state-dir", join(dir.path, "state"), "--unit-dir", join(dir.path, "no-units")], env);
  await eventually(
    async () => syncLines().length,
    (n) => n >= 1,
    "the first sync",
  );
});
test.after(async () => {
  if (agent.child.exitCode === null) agent.child.kill("SIGKILL");
  await panel.stop();
  await new Promise<void>((r) => proxy.close(() => r()));
  await dir.remove();
});

test("the first sync stores the instance, its accounts (passwords sealed) and the WebIF password (sealed)", async () => {
  const instance = await panel.db("instances").first();
  assert.is(instance.name, "main");
  assert.is(instance.config_dir, configDir());
  assert.is(instance.reader_count, 5);
  assert.ok(instance.ports.some((p: { protocol: string; port: number }) => p.protocol === "newcamd" && p.port === 15001));
  const accounts = await panel.db("accounts").where({ instance_id: instance.id }).orderBy("username");
  assert.is(accounts.length, 20);
  const bedroom = accounts.find((a) => a.username === "bedroom")!;
  assert.match(bedroom.password, /^enc:v1:/);
  assert.is(open(bedroom.password, "accounts", "password", bedroom.id), "br-Kd81mQzp");
  const install = await panel.db("oscam_installs").where({ instance_name: "main" }).first();
  assert.is(install.webif_username, "admin");
  assert.is(open(install.webif_password, "oscam_installs", "webif_password", install.id), "dev-webif-Pw!main-7f3c");
  assert.is(Number((await panel.db("resource_samples").where({ instance_id: instance.id }).count({ n: "*" }))[0]!.n) >= 1, true);
});

test("every heartbeat after the sync carries resource readings: the host's and the instance's, kept as history", async () => {
  const instance = await panel.db("instances").first();
  const count = async (table: string, where: Record<string, string>) => Number((await panel.db(table).where(where).count({ n: "*" }))[0]!.n);
  const instanceBefore = await count("resource_samples", { instance_id: instance.id });
  const hostBefore = await count("host_resource_samples", { server_id: instance.server_id });
  await eventually(
    async () => [await count("resource_samples", { instance_id: instance.id }), await count("host_resource_samples", { server_id: instance.server_id })],
    ([i, h]) => i! >= instanceBefore + 2 && h! >= hostBefore + 2,
    "readings from two more heartbeats",
  );
  const host = await panel.db("host_resource_samples").where({ server_id: instance.server_id }).orderBy("at", "desc").first();
  assert.ok(host.memory_total_mb > 0 && host.memory_used_mb > 0 && host.memory_used_mb <= host.memory_total_mb, JSON.stringify(host));
  assert.ok(host.disk_used_mb > 0);
  assert.is(host.load_average.length, 3);
  const reading = await panel.db("resource_samples").where({ instance_id: instance.id }).orderBy("at", "desc").first();
  assert.ok(reading.disk_mb > 0, "the config dir's size");
});

test("no canary is in any byte the agent sent, in the panel's database, or in any log line", async () => {
  assert.equal(leakedCanaries(canaries, Buffer.concat(captured).toString("latin1")), [], "sent over HTTP");
  const dump = [];
  for (const { table } of await panel.db("information_schema.tables").select({ table: "table_name" }).where("table_schema", "public")) {
    dump.push(JSON.stringify(await panel.db(table).select("*")));
  }
  assert.equal(leakedCanaries(canaries, dump.join("\n")), [], "stored in the panel's database");
  assert.equal(leakedCanaries(canaries, agent.stderr() + panel.logs.text()), [], "in the logs");
  assert.not.ok((agent.stderr() + panel.logs.text()).includes("dev-webif-Pw!main-7f3c"), "the WebIF password is never logged");
});

test("changing one account in the file leads to exactly one re-sync with that change, and only its row is rewritten", async () => {
  const before = syncRequests.length;
  const snapshotsBefore = await snapshotsStored();
  const rowsBefore = new Map<string, { password: string; updated_at: Date }>(
    (await panel.db("accounts").select("username", "password", "updated_at")).map((r: { username: string; password: string; updated_at: Date }) => [
      r.username,
      r,
    ]),
  );
  const file = join(configDir(), "oscam.user");
  await writeFile(
    file,
    (await readFile(file, "utf8")).replace("description                   = Bedroom Zgemma H7", "description                   = Bedroom, moved"),
  );
  await eventually(
    async () => syncLines().length,
    (n) => n >= 2,
    "the re-sync",
  );
  const bedroom = await eventually(
    () => panel.db("accounts").where({ username: "bedroom" }).first(),
    (row) => row.description === "Bedroom, moved",
    "the change stored",
  );
  assert.is(bedroom.description, "Bedroom, moved");
  assert.is(syncRequests.length - before, 1, "one Sync request for one change");
  assert.is(syncLines().length, 2);
  assert.is((await snapshotsStored()) - snapshotsBefore, 1, "one snapshot counted on /metrics (myosicam_instance_snapshots_stored_total)");
  for (const row of await panel.db("accounts").select("username", "password", "updated_at")) {
    const earlier = rowsBefore.get(row.username)!;
    assert.is(row.password, earlier.password, `${row.username}: an unchanged password keeps its envelope`);
    if (row.username === "bedroom") assert.ok(row.updated_at > earlier.updated_at, "the changed account is rewritten");
    else assert.equal(row.updated_at, earlier.updated_at, `${row.username}: an unchanged account is not rewritten`);
  }
});

test("the retention job's purge deletes instance and host readings older than the retention, and keeps the rest", async () => {
  const instance = await panel.db("instances").first();
  await panel.db("resource_samples").insert({ instance_id: instance.id, at: panel.db.raw("now() - interval '8 days'"), cpu_percent: 1, rss_mb: 1, disk_mb: 1 });
  await panel.db("host_resource_samples").insert({
    server_id: instance.server_id,
    at: panel.db.raw("now() - interval '8 days'"),
    cpu_percent: 1,
    memory_used_mb: 1,
    memory_total_mb: 2,
    disk_used_mb: 1,
  });
  const recent = Number((await panel.db("host_resource_samples").count({ n: "*" }))[0]!.n) - 1;
  assert.is(await purgeResourceSamples(panel.db), 2);
  assert.is(Number((await panel.db("resource_samples").where("at", "<", panel.db.raw("now() - interval '7 days'")).count({ n: "*" }))[0]!.n), 0);
  assert.ok(Number((await panel.db("host_resource_samples").count({ n: "*" }))[0]!.n) >= recent, "recent readings are kept");
});

test("an instance the agent stops reporting is marked gone, not deleted; it comes back when reported again", async () => {
  agent.child.kill("SIGTERM");
  await agent.exited;
  const instance = await panel.db("instances").first();
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));
  await storeSync(panel.db, crypto, instance.server_id, create(SyncRequestSchema, { present: [] }));
  const gone = await panel.db("instances").where({ id: instance.id }).first();
  assert.ok(gone.gone_at, "marked gone");
  assert.is(Number((await panel.db("accounts").where({ instance_id: instance.id }).count({ n: "*" }))[0]!.n), 20, "its accounts are kept");
  const back = await storeSync(
    panel.db,
    crypto,
    instance.server_id,
    create(SyncRequestSchema, { present: [{ name: "main", contentHash: instance.content_hash }] }),
  );
  assert.equal(back.resend, [], "same content: nothing to resend");
  assert.is((await panel.db("instances").where({ id: instance.id }).first()).gone_at, null);
  const changed = await storeSync(
    panel.db,
    crypto,
    instance.server_id,
    create(SyncRequestSchema, {
      present: [
        { name: "main", contentHash: "0".repeat(64) },
        { name: "new", contentHash: "1".repeat(64) },
      ],
    }),
  );
  assert.equal(changed.resend, ["main", "new"], "the panel asks for what it does not have");
});

test("a snapshot replaces its instance's accounts: kept, changed, added and gone in one store; an empty file leaves none; the host's reading is kept", async () => {
  const server = await panel.enroll("sync-replace");
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));
  const account = (user: string, description = "") => ({ user, password: `pw-${user}`, enabled: true, groups: [1], description });
  const sync = (hash: string, accounts: ReturnType<typeof account>[]) =>
    storeSync(
      panel.db,
      crypto,
      server.id,
      create(SyncRequestSchema, {
        present: [{ name: "replace", contentHash: hash }],
        snapshots: [{ ref: { name: "replace", contentHash: hash }, configDir: "/etc/oscam-replace", accounts }],
        host: { cpuPercent: 12.5, memoryUsedMb: 900, memoryTotalMb: 2048, diskUsedMb: 5000, load: { one: 0.5, five: 0.25, fifteen: 0.125 } },
      }),
    );
  const users = async () => {
    const instance = await panel.db("instances").where({ server_id: server.id, name: "replace" }).first("id");
    return (await panel.db("accounts").where({ instance_id: instance.id }).orderBy("username").select("username", "description")).map(
      (r: { username: string; description: string }) => `${r.username}:${r.description}`,
    );
  };
  await sync("a".repeat(64), [account("u1"), account("u2"), account("u3")]);
  assert.equal(await users(), ["u1:", "u2:", "u3:"]);
  await sync("b".repeat(64), [account("u1"), account("u3", "changed"), account("u4")]);
  assert.equal(await users(), ["u1:", "u3:changed", "u4:"], "u2 is gone, u3 changed, u4 added");
  await sync("c".repeat(64), []);
  assert.equal(await users(), [], "an empty file leaves no account");
  const readings = await panel.db("host_resource_samples").where({ server_id: server.id }).select("cpu_percent", "memory_total_mb", "load_average");
  assert.is(readings.length, 3, "one host reading per sync");
  assert.equal([readings[0].cpu_percent, readings[0].memory_total_mb, readings[0].load_average], [12.5, 2048, [0.5, 0.25, 0.125]]);
});

test.run();
