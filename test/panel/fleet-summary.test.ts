import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AccountService, AccountState } from "../../gen/myosicam/panel/v1/account_pb.js";
import { Role } from "../../gen/myosicam/panel/v1/common_pb.js";
import { FleetService } from "../../gen/myosicam/panel/v1/fleet_pb.js";
import { ServerService } from "../../gen/myosicam/panel/v1/server_pb.js";
import { startAgentFleet, type AgentFleet } from "../helpers/agent-fleet.js";
import { cliWith } from "../helpers/cli.js";
import { eventually } from "../helpers/eventually.js";
import { apiClientWith, codeOf, ownerApi, type OperatorApi } from "../helpers/operator-api.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("FleetService.GetFleetSummary: the overview's counts, within the caller's scope, agreeing with the lists; `myosicam status`");

let panel: PanelHost;
let owner: OperatorApi;
let fleet: AgentFleet;
const cli = cliWith(() => ({ MYOSICAM_DATA_DIR: panel.dataDir, LOG_LEVEL: "warn" }));

test.before(async () => {
  panel = await startPanelHost("fleet_summary");
  await panel.setLicense(10, 20);
  owner = await ownerApi(panel);
  fleet = await startAgentFleet(panel, { "sum-a": ["main"], "sum-b": ["main", "backup"] });
  await eventually(
    () => panel.db("accounts").count<Array<{ n: string }>>({ n: "*" }),
    ([r]) => Number(r!.n) === 60,
    "60 accounts synced",
  );
  await owner.client(ServerService).setServerTags({ serverIds: [fleet.serverIds.get("sum-a")!], add: ["team-a"] });
  // One WebIF answers again (the emulators' instances run no OScam process, so all start unreachable).
  await panel
    .db("instances")
    .where({ server_id: fleet.serverIds.get("sum-a") })
    .update({ webif: panel.db.raw(`webif || '{"reachable": true}'::jsonb`) });
});

test.after(async () => {
  await fleet?.stop();
  await panel?.stop();
});

/** How many accounts the account table lists in `state`, for the caller of `api`. */
const listed = async (api: OperatorApi, state: AccountState) =>
  (await api.client(AccountService).listAccounts({ filter: { states: [state] }, pageSize: 1 })).total;

test("the counts are the fleet's, and the account counts are what the account table lists", async () => {
  const s = await owner.client(FleetService).getFleetSummary({});
  assert.is(s.serversTotal, 2);
  assert.is(s.serversOnline, 2);
  assert.is(s.instancesTotal, 3);
  assert.is(s.instancesRunning + s.instancesStopped, 3);
  assert.is(s.webifUnreachable, 2, "sum-b's two");
  assert.is(s.accountsTotal, 60);
  assert.is(s.expiringWithinDays, 7);
  assert.is(s.accountsExpiring, await listed(owner, AccountState.EXPIRING));
  assert.is(s.accountsExpired, await listed(owner, AccountState.EXPIRED));
  assert.ok(s.accountsExpired > 0, "the fixtures have expired accounts");
  assert.is(s.license?.state, "active");
  assert.is(s.license?.maxServers, 10);
  assert.is(s.license?.usedServers, 2);
  assert.is(s.license?.usedInstances, 3);
  assert.is(s.approvalRequired, false);
  assert.is(s.missedHeartbeats, panel.config.agentMissedHeartbeats);
});

test("a scoped caller counts only its servers; a tag filter narrows an unscoped one the same way", async () => {
  const scoped = await apiClientWith(panel, "summary-scoped", Role.VIEWER, { tags: ["team-a"] });
  const mine = await scoped.client(FleetService).getFleetSummary({});
  assert.is(mine.serversTotal, 1);
  assert.is(mine.instancesTotal, 1);
  assert.is(mine.webifUnreachable, 0);
  assert.is(mine.accountsTotal, 20);
  assert.is(mine.accountsExpired, await listed(scoped, AccountState.EXPIRED));
  const tagged = await owner.client(FleetService).getFleetSummary({ tags: ["team-a"] });
  assert.equal([tagged.serversTotal, tagged.instancesTotal, tagged.accountsTotal], [mine.serversTotal, mine.instancesTotal, mine.accountsTotal]);
});

test("a bad request is refused in words", async () => {
  assert.is(await codeOf(() => owner.client(FleetService).getFleetSummary({ expiringWithinDays: 400 })), "InvalidArgument");
  assert.is(await codeOf(() => owner.client(FleetService).getFleetSummary({ tags: ["Not A Tag"] })), "InvalidArgument");
});

test("`myosicam status` prints the same, in words and as JSON", async () => {
  const words = await cli(["status"]);
  assert.is(words.code, 0, words.stderr);
  assert.match(words.stdout, /^Servers {5}2: 2 online, 0 unreachable/m);
  assert.match(words.stdout, /^Instances {3}3: /m);
  assert.match(words.stdout, /^License {5}active( \([^)]*\))?: servers 2 of 10, instances 3 of 20/m);
  const json = await cli<{ accounts: { total: number; expiringWithinDays: number } }>(["status", "--json", "--expiring-days", "30"]);
  assert.is(json.code, 0, json.stderr);
  assert.is(json.json?.accounts.total, 60);
  assert.is(json.json?.accounts.expiringWithinDays, 30);
  const bad = await cli(["status", "--tag", "Bad Tag"]);
  assert.is(bad.code, 1);
  assert.is(bad.stdout, "");
  assert.match(bad.stderr, /tags/);
});

test.run();
