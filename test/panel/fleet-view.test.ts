import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentHealth } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { InstanceService } from "../../gen/myosicam/panel/v1/instance_pb.js";
import { ServerService, ServerStatus } from "../../gen/myosicam/panel/v1/server_pb.js";
import { eventually } from "../helpers/eventually.js";
import { ownerApi, type OperatorApi } from "../helpers/operator-api.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("the fleet as operators read it: server lists, counts, one server in detail, instances and resource history");

let panel: PanelHost;
let owner: OperatorApi;
let serverId: string;
test.before(async () => {
  panel = await startPanelHost("fleet_view");
  await panel.setLicense(100, 100);
  owner = await ownerApi(panel);
  const { id, client } = await panel.enroll("view-1");
  serverId = id;
  await client.sync({
    present: [{ name: "main", contentHash: "a".repeat(64) }],
    snapshots: [
      {
        ref: { name: "main", contentHash: "a".repeat(64) },
        configDir: "/etc/oscam",
        version: "2.26.05-11960",
        runtime: { running: true, pid: 321, uptimeSeconds: 90n },
        config: {
          readerCount: 3,
          readersLoaded: 2,
          readersEnabled: 2,
          ports: [
            { protocol: "newcamd", port: 15000, caid: "0963:000000" },
            { protocol: "cccam", port: 12000, notCompiledIn: true },
          ],
          settings: [{ section: "global", key: "nice", value: "-1" }],
        },
        webif: { host: "127.0.0.1", port: 8888, reachable: true, username: "admin", password: "webif-secret" },
      },
    ],
  });
  await client.heartbeat({
    uptimeSeconds: 60n,
    health: AgentHealth.OK,
    agentVersion: "0.1.0",
    host: { cpuPercent: 12.5, memoryUsedMb: 512, memoryTotalMb: 2048, diskUsedMb: 1000, load: { one: 0.5, five: 0.4, fifteen: 0.3 } },
    instances: [{ name: "main", resources: { cpuPercent: 3, rssMb: 40, diskMb: 5 } }],
  });
  await eventually(
    () => panel.db("host_resource_samples").where({ server_id: id }).count("* as n"),
    (r) => Number(r[0]!.n) === 1,
    "the heartbeat's readings",
  );
});
test.after(() => panel.stop());

test("one server in detail: host facts, agent, instances and the latest host reading", async () => {
  const detail = await owner.client(ServerService).getServer({ serverId });
  assert.is(detail.server!.name, "view-1");
  assert.is(detail.server!.status, ServerStatus.ONLINE);
  assert.is(detail.server!.agentVersion, "0.1.0");
  assert.is(detail.server!.instanceCount, 1);
  assert.is(detail.server!.runningInstanceCount, 1);
  assert.equal(
    detail.instances.map((i) => [i.name, i.version, i.running, i.pid, i.readerCount]),
    [["main", "2.26.05-11960", true, 321, 3]],
  );
  assert.is(detail.latestHostReading!.cpuPercent, 12.5);
  assert.is(detail.latestHostReading!.memoryTotalMb, 2048);
});

test("instances with ports, WebIF endpoint and reachability, config summary and reader counts; never a WebIF password", async () => {
  const { instances } = await owner.client(InstanceService).listInstances({ serverId });
  const main = instances[0]!;
  assert.equal(
    main.ports.map((p) => [p.protocol, p.port, p.active]),
    [
      ["newcamd", 15000, true],
      ["cccam", 12000, false],
    ],
  );
  assert.equal([main.webif!.host, main.webif!.port, main.webif!.reachable, main.webif!.username], ["127.0.0.1", 8888, true, "admin"]);
  assert.equal([main.readerCount, main.readersLoaded, main.readersEnabled], [3, 2, 2]);
  assert.equal(
    main.settings.map((s) => `${s.section}.${s.key}=${s.value}`),
    ["global.nice=-1"],
  );
  assert.not.ok(JSON.stringify(main, (_k, v) => (typeof v === "bigint" ? String(v) : v)).includes("webif-secret"));
});

test("resource history: raw readings for a short span, averaged buckets for a long one", async () => {
  const instanceId = (await owner.client(InstanceService).listInstances({ serverId })).instances[0]!.id;
  // Readings over the last two days, one an hour, for the host and the instance.
  const hours = Array.from({ length: 48 }, (_, i) => new Date(Date.now() - (i + 0.75) * 3600_000));
  await panel.db("host_resource_samples").insert(
    hours.map((at, i) => ({
      server_id: serverId,
      at,
      cpu_percent: i % 2 === 0 ? 10 : 30,
      memory_used_mb: 100,
      memory_total_mb: 200,
      disk_used_mb: 50,
      load_average: [1, 1, 1],
    })),
  );
  await panel.db("resource_samples").insert(hours.map((at) => ({ instance_id: instanceId, at, cpu_percent: 2, rss_mb: 20, disk_mb: 1 })));
  const instances = owner.client(InstanceService);
  const hour = await instances.getResourceHistory({ serverId, since: timestampFromDate(new Date(Date.now() - 30 * 60_000)) });
  assert.is(hour.resolutionSeconds, 0, "raw for the last 30 minutes");
  assert.is(hour.points.length, 1);
  assert.is(hour.points[0]!.samples, 1);
  const week = await instances.getResourceHistory({ serverId, since: timestampFromDate(new Date(Date.now() - 7 * 86400_000)) });
  assert.ok(week.resolutionSeconds >= 60, "bucketed for a week");
  assert.is(
    week.points.reduce((n, p) => n + p.samples, 0),
    49,
  );
  const daily = await instances.getResourceHistory({ serverId, since: timestampFromDate(new Date(Date.now() - 2 * 86400_000)), resolutionSeconds: 7200 });
  assert.is(daily.resolutionSeconds, 7200);
  assert.ok(daily.points.every((p) => p.cpuPercent >= 10 && p.cpuPercent <= 30));
  assert.ok(
    daily.points.some((p) => p.samples === 2 && p.cpuPercent === 20),
    "two readings of 10 and 30 average to 20",
  );
  const inst = await instances.getResourceHistory({
    serverId,
    instanceId,
    since: timestampFromDate(new Date(Date.now() - 2 * 86400_000)),
    resolutionSeconds: 86400,
  });
  // 48 hourly readings of 20 MB and the heartbeat's 40 MB, in buckets of a day.
  assert.is(
    inst.points.reduce((n, p) => n + p.samples, 0),
    49,
  );
  assert.ok(inst.points.length >= 2 && inst.points.every((p) => p.memoryMb >= 20 && p.memoryMb <= 40));
});

test("lists filter by status, tag and free text, page by cursor, and count per status", async () => {
  const servers = owner.client(ServerService);
  for (let i = 0; i < 7; i++) await servers.addServer({ name: `page-${i}`, tags: i % 2 === 0 ? ["even"] : ["odd"] });
  await servers.setServerTags({ serverIds: [serverId], add: ["prod", "even"] });
  const names: string[] = [];
  let pageToken = "";
  do {
    const page = await servers.listServers({ pageSize: 3, pageToken });
    assert.is(page.total, 8);
    names.push(...page.servers.map((s) => s.name));
    pageToken = page.nextPageToken;
  } while (pageToken);
  assert.equal(names, [...names].sort());
  assert.is(names.length, 8);
  assert.equal(
    (await servers.listServers({ filter: { statuses: [ServerStatus.ONLINE] } })).servers.map((s) => s.name),
    ["view-1"],
  );
  assert.equal(
    (await servers.listServers({ filter: { tags: ["even", "prod"] } })).servers.map((s) => s.name),
    ["view-1"],
  );
  assert.is((await servers.listServers({ filter: { tags: ["even"] } })).total, 5);
  assert.equal(
    (await servers.listServers({ filter: { query: "192.0.2" } })).servers.map((s) => s.name),
    ["view-1"],
    "free text matches addresses",
  );
  assert.equal(
    (await servers.listServers({ filter: { query: "AGE-5" } })).servers.map((s) => s.name),
    ["page-5"],
  );
  const counts = await servers.countServers({});
  assert.equal([counts.total, counts.online, counts.new], [8, 1, 7]);
  assert.is((await servers.countServers({ tags: ["odd"] })).total, 3);
  const removed = await servers.setServerTags({ serverIds: [serverId], remove: ["even"] });
  assert.equal(removed.servers[0]!.tags, ["prod"]);
});

test("re-running the bootstrap gives a fresh token and the exact command; the old agent token dies when the new one registers", async () => {
  const servers = owner.client(ServerService);
  const { bootstrap } = await servers.rerunBootstrap({ serverId, tokenTtlSeconds: 600 });
  assert.match(bootstrap!.installToken, /^[0-9a-f]{64}$/);
  assert.match(
    bootstrap!.command,
    new RegExp(`^printf '%s\\\\n' '${bootstrap!.installToken}' \\| MYOSICAM_PANEL_URL=${panel.url} MYOSICAM_PANEL_FINGERPRINT=sha256:[0-9a-f]{64} `),
  );
  assert.ok(bootstrap!.expiresAt);
  assert.is((await servers.listInstallTokens({ serverId })).tokens.filter((t) => t.hashPrefix === bootstrap!.tokenHashPrefix).length, 1);
  await servers.removeServer({ serverId: (await servers.listServers({ filter: { name: "page-0" } })).servers[0]!.id });
  assert.is((await servers.listServers({ filter: { name: "page-0" } })).servers.length, 0);
});

test.run();
