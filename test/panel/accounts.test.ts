import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AccountService, AccountState, ChangeSetStatus, ChangeSource, ItemStatus, type ChangeSet } from "../../gen/myosicam/panel/v1/account_pb.js";
import { InstanceService } from "../../gen/myosicam/panel/v1/instance_pb.js";
import { CommandService, CommandStatus } from "../../gen/myosicam/panel/v1/command_pb.js";
import { CommandKind } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { Role } from "../../gen/myosicam/panel/v1/common_pb.js";
import { ConnectError } from "@connectrpc/connect";
import { startAgentFleet, type AgentFleet } from "../helpers/agent-fleet.js";
import { cliWith } from "../helpers/cli.js";
import { eventually } from "../helpers/eventually.js";
import { apiClientWith, codeOf, ownerApi, type OperatorApi } from "../helpers/operator-api.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("AccountService: one table over the fleet, change sets with per-account results, rollback, retry, revert, drift, CSV");

let panel: PanelHost;
let owner: OperatorApi;
let fleet: AgentFleet;
const accounts = () => owner.client(AccountService);
const cli = cliWith(() => ({ MYOSICAM_DATA_DIR: panel.dataDir, LOG_LEVEL: "warn" }));
const instanceIdOf = async (server: string, name: string) =>
  (
    await panel
      .db("instances")
      .where({ server_id: fleet.serverIds.get(server), name })
      .first()
  ).id as string;

/** Follows a change set with WatchChangeSet to its end; answers the last state. */
async function watchToEnd(id: string): Promise<ChangeSet> {
  let last: ChangeSet | undefined;
  // No call timeout (not even the transport's default) and an unref'd deadline instead: connect
  // keeps a call's deadline timer armed after a stream is left early (`break`), which held this
  // file's process a minute after its last test.
  for await (const res of accounts().watchChangeSet({ changeSetId: id }, { timeoutMs: 0, signal: AbortSignal.timeout(60_000) })) {
    last = res.changeSet;
    if (res.done) break;
  }
  return last!;
}

/** Waits until the panel's view of an instance was synced after `since`. */
const syncedAfter = (server: string, name: string, since: Date) =>
  eventually(
    () =>
      panel
        .db("instances")
        .where({ server_id: fleet.serverIds.get(server), name })
        .first(),
    (r) => r.synced_at > since,
    `a sync of ${server}/${name}`,
  );

test.before(async () => {
  try {
    panel = await startPanelHost("accounts_api", { AGENT_HEARTBEAT_INTERVAL_SECONDS: "1" });
    await panel.setLicense(10, 10);
    owner = await ownerApi(panel);
    // 3 agents, 5 instances, 20 accounts each.
    fleet = await startAgentFleet(panel, { "acc-a": ["main", "backup"], "acc-b": ["main", "backup"], "acc-c": ["main"] });
    // Three agent processes starting and syncing beside another test file: 20 s was once too short in CI.
    await eventually(
      () => panel.db("accounts").count<Array<{ n: string }>>({ n: "*" }),
      ([r]) => Number(r!.n) === 100,
      "every account synced",
      60_000,
    );
  } catch (err) {
    // uvu reports a failed `before` as every test failing, without the error: say it here.
    console.error("the setup of this file failed:", err);
    throw err;
  }
});
test.after(async () => {
  await fleet?.stop();
  await panel?.stop();
});

test("one table: every account of every instance, filtered, sorted and paged, without passwords", async () => {
  const all = await accounts().listAccounts({ pageSize: 500 });
  assert.is(all.total, 100);
  assert.is(all.accounts.length, 100);
  assert.ok(all.accounts.every((a) => a.hasPassword));
  const listed = JSON.stringify(all.accounts, (_, v) => (typeof v === "bigint" ? String(v) : v));
  assert.not.match(listed, /lr-7Hq2x9vT|br-Kd81mQzp|kv-p0Lm3Rt6/, "no password in the list");
  const kitchen = all.accounts.find((a) => a.serverName === "acc-a" && a.instanceName === "main" && a.user === "kitchen_vu")!;
  assert.equal([kitchen.expiryDate, kitchen.state, kitchen.groups], ["2031-12-31", AccountState.ACTIVE, [1]]);
  // Paging by cursor covers each account once, in user order.
  const seen: string[] = [];
  let token = "";
  do {
    const page = await accounts().listAccounts({ pageSize: 7, pageToken: token, sort: 2 });
    seen.push(...page.accounts.map((a) => a.id));
    token = page.nextPageToken;
  } while (token);
  assert.is(seen.length, 100);
  assert.is(new Set(seen).size, 100);
  const byText = await accounts().listAccounts({ filter: { query: "LIVING ROOM", serverIds: [fleet.serverIds.get("acc-b")!] } });
  assert.equal(
    byText.accounts.map((a) => [a.serverName, a.user]),
    [["acc-b", "livingroom"]],
  );
  const disabled = await accounts().listAccounts({ filter: { states: [AccountState.DISABLED] }, pageSize: 500 });
  assert.ok(disabled.accounts.length > 0 && disabled.accounts.every((a) => !a.enabled && a.state === AccountState.DISABLED));
  assert.is(await codeOf(() => accounts().listAccounts({ pageToken: "garbage" })), "InvalidArgument");
});

test("RevealPassword returns one password to an operator, is audited, and is refused to a viewer", async () => {
  const [row] = (await accounts().listAccounts({ filter: { users: ["livingroom"], instanceIds: [await instanceIdOf("acc-a", "main")] } })).accounts;
  const { password } = await accounts().revealPassword({ accountId: row!.id });
  assert.is(password, "lr-7Hq2x9vT");
  const audit = await panel.db("audit_log").where({ action: "AccountService.RevealPassword" }).orderBy("id", "desc").first();
  assert.equal([audit.outcome, audit.target], ["ok", `account:${row!.id}`]);
  const viewer = await apiClientWith(panel, "accounts-viewer", Role.VIEWER);
  assert.is(await codeOf(() => viewer.client(AccountService).revealPassword({ accountId: row!.id })), "PermissionDenied");
});

test("invalid changes are refused naming account and field; nothing is stored or sent", async () => {
  const main = await instanceIdOf("acc-a", "main");
  const counts = async () => [Number((await panel.db("change_sets").count({ n: "*" }))[0]!.n), Number((await panel.db("commands").count({ n: "*" }))[0]!.n)];
  const before = await counts();
  const refusal = async (req: Parameters<ReturnType<typeof accounts>["createChangeSet"]>[0]) => {
    try {
      await accounts().createChangeSet(req);
    } catch (err) {
      const e = ConnectError.from(err);
      return `${e.code}:${e.rawMessage}`;
    }
    return "ok";
  };
  assert.match(await refusal({ creations: [{ instanceIds: [main], user: " padded", fields: {} }] }), /^3:.*account " padded" on acc-a\/main: user: .*space/);
  assert.match(await refusal({ creations: [{ instanceIds: [main], user: "bedroom", fields: {} }] }), /account "bedroom" on acc-a\/main: user: exists already/);
  assert.match(
    await refusal({
      creations: [
        { instanceIds: [main], user: "twice", fields: {} },
        { instanceIds: [main], user: "twice", fields: {} },
      ],
    }),
    /account "twice" on acc-a\/main: user: is created twice/,
  );
  assert.match(
    await refusal({ creations: [{ instanceIds: [main], user: "newbox", fields: { expiryDate: "2027-02-30" } }] }),
    /expdate: "2027-02-30" is not a day/,
  );
  assert.match(await refusal({ creations: [{ instanceIds: [main], user: "newbox", fields: { caid: "09G3" } }] }), /caid: "09G3" is not CAID/);
  assert.match(
    await refusal({ selection: { selection: { case: "filter", value: {} } }, edits: [{ edit: { case: "setIdent", value: "0500:030B00;0100" } }] }),
    /set_ident: "0100" is not CAID:provid/,
  );
  assert.match(
    await refusal({ selection: { selection: { case: "filter", value: { users: ["nobody-has-this"] } } }, edits: [{ edit: { case: "disable", value: {} } }] }),
    /nothing was stored or sent: the selection \(every account with users nobody-has-this\) matches no account/,
  );
  assert.equal(await counts(), before, "nothing stored or sent");
});

let disableAndExtend: ChangeSet;
let filesBefore: Map<string, Buffer>;

test("a filter-selected change set over 3 agents and 5 instances: one WebIF fails the reload, that file is rolled back, the rest apply", async () => {
  filesBefore = new Map(await Promise.all(fleet.instances.map(async (i) => [`${i.server}/${i.name}`, await i.userFile()] as const)));
  const failing = fleet.instance("acc-c", "main");
  failing.emulator.failNextReloads(1);
  const enabledBefore = new Map(
    (await accounts().listAccounts({ filter: { group: 2, serverIds: [fleet.serverIds.get("acc-c")!] }, pageSize: 500 })).accounts.map((a) => [
      a.user,
      a.enabled,
    ]),
  );
  const preview = await accounts().createChangeSet({
    selection: { selection: { case: "filter", value: { group: 2 } } },
    edits: [{ edit: { case: "disable", value: {} } }, { edit: { case: "extendExpiryDays", value: 30 } }],
    dryRun: true,
  });
  assert.is(preview.changeSet!.id, "");
  assert.ok(preview.preview.some((p) => p.status === ItemStatus.PENDING));
  assert.ok(preview.preview.every((p) => p.status !== ItemStatus.PENDING || p.changes.some((c) => c.field === "disabled" || c.field === "expdate")));
  const { changeSet } = await accounts().createChangeSet({
    description: "group 2 off",
    selection: { selection: { case: "filter", value: { group: 2 } } },
    edits: [{ edit: { case: "disable", value: {} } }, { edit: { case: "extendExpiryDays", value: 30 } }],
  });
  assert.match(changeSet!.selection, /group 2/);
  assert.is(changeSet!.instances.length, 5, "every instance has group-2 accounts");
  disableAndExtend = await watchToEnd(changeSet!.id);
  assert.is(disableAndExtend.status, ChangeSetStatus.PARTIALLY_FAILED, JSON.stringify(disableAndExtend.instances));
  const byInstance = new Map(disableAndExtend.instances.map((i) => [`${i.serverName}/${i.instanceName}`, i]));
  const failed = byInstance.get("acc-c/main")!;
  assert.is(failed.failureCode, "reload_failed_rolled_back");
  assert.ok(failed.counts!.failed > 0 && failed.counts!.applied === 0);
  assert.match(failed.detail, /HTTP 500.*previous oscam\.user was put back and OScam reloaded it/);
  for (const [key, i] of byInstance) if (key !== "acc-c/main") assert.is(i.counts!.failed, 0, key);
  assert.ok((await failing.userFile()).equals(filesBefore.get("acc-c/main")!), "the failed instance's file is as before");
  // Each failed account carries the agent's reason.
  const items = await accounts().listChangeSetItems({ changeSetId: changeSet!.id, statuses: [ItemStatus.FAILED] });
  assert.ok(items.items.length > 0 && items.items.every((i) => i.serverName === "acc-c" && i.failureCode === "reload_failed_rolled_back"));
  // The panel shows what OScam has: applied accounts disabled, the rolled-back ones not.
  await eventually(
    () => accounts().listAccounts({ filter: { group: 2 }, pageSize: 500 }),
    (page) => page.accounts.every((a) => (a.serverName === "acc-c" ? a.enabled === enabledBefore.get(a.user) : !a.enabled)),
    "the synced view",
  ).catch(async () => {
    const page = await accounts().listAccounts({ filter: { group: 2 }, pageSize: 500 });
    throw new Error(JSON.stringify(page.accounts.map((a) => [a.serverName, a.instanceName, a.user, a.enabled])));
  });
});

test("retrying sends only the failed accounts again", async () => {
  const commandsBefore = Number((await panel.db("commands").count({ n: "*" }))[0]!.n);
  const { changeSet } = await accounts().retryChangeSet({ changeSetId: disableAndExtend.id });
  assert.is(changeSet!.retries, 1);
  assert.is(Number((await panel.db("commands").count({ n: "*" }))[0]!.n), commandsBefore + 1, "one command, for the one instance that failed");
  const done = await watchToEnd(disableAndExtend.id);
  assert.is(done.status, ChangeSetStatus.APPLIED);
  assert.is(await codeOf(() => accounts().retryChangeSet({ changeSetId: disableAndExtend.id })), "FailedPrecondition");
});

test("history shows field-level diffs; Revert restores every file byte for byte", async () => {
  const { entries } = await accounts().listHistory({ of: { case: "changeSetId", value: disableAndExtend.id }, pageSize: 1000 });
  assert.ok(entries.length > 0);
  assert.ok(entries.every((e) => e.source === ChangeSource.PANEL && e.changes.length > 0));
  assert.ok(entries.some((e) => e.changes.some((c) => c.field === "disabled" && c.before === "" && c.after === "1")));
  const extended = entries.find((e) => e.changes.some((c) => c.field === "expdate" && c.before !== ""));
  assert.ok(extended, "an account with an expiry got it extended");
  const { changeSet } = await accounts().revertChangeSet({ changeSetId: disableAndExtend.id });
  assert.is(changeSet!.revertsChangeSetId, disableAndExtend.id);
  const done = await watchToEnd(changeSet!.id);
  assert.is(done.status, ChangeSetStatus.APPLIED);
  for (const i of fleet.instances) assert.ok((await i.userFile()).equals(filesBefore.get(`${i.server}/${i.name}`)!), `${i.server}/${i.name} is byte-identical`);
});

test("create on several instances at once, delete, and revert re-creates the account where it was", async () => {
  const targets = [await instanceIdOf("acc-a", "main"), await instanceIdOf("acc-b", "backup")];
  const before = new Map(await Promise.all(fleet.instances.map(async (i) => [`${i.server}/${i.name}`, await i.userFile()] as const)));
  const created = await accounts().createChangeSet({
    creations: [
      {
        instanceIds: targets,
        user: "fleetbox",
        fields: { password: "fb-Secret-1", groups: [1], expiryDate: "2030-01-31", description: "one box, two servers" },
      },
    ],
  });
  const createdDone = await watchToEnd(created.changeSet!.id);
  assert.equal([createdDone.status, createdDone.counts!.applied], [ChangeSetStatus.APPLIED, 2]);
  assert.match((await fleet.instance("acc-a", "main").userFile()).toString(), /user\s*= fleetbox\n.*pwd\s*= fb-Secret-1/s);
  // Delete an account in the middle of a file, then revert: it comes back in its place.
  const middle = [{ instanceId: targets[0]!, user: "bedroom" }];
  const deleted = await accounts().createChangeSet({
    selection: { selection: { case: "keys", value: { keys: middle } } },
    edits: [{ edit: { case: "delete", value: {} } }],
  });
  assert.is((await watchToEnd(deleted.changeSet!.id)).status, ChangeSetStatus.APPLIED);
  const beforeDelete = (await fleet.instance("acc-a", "main").userFile()).toString();
  assert.not.match(beforeDelete, /user\s*= bedroom/);
  const reverted = await accounts().revertChangeSet({ changeSetId: deleted.changeSet!.id });
  assert.is((await watchToEnd(reverted.changeSet!.id)).status, ChangeSetStatus.APPLIED);
  const revertCreate = await accounts().revertChangeSet({ changeSetId: created.changeSet!.id });
  assert.is((await watchToEnd(revertCreate.changeSet!.id)).status, ChangeSetStatus.APPLIED);
  for (const i of fleet.instances) assert.ok((await i.userFile()).equals(before.get(`${i.server}/${i.name}`)!), `${i.server}/${i.name} is byte-identical`);
});

test("after a change set's change the panel takes the instance's new content hash from the result: no snapshot follows, and a resync finds the panel holding the instance as it is", async () => {
  const agent = fleet.agents[0]!;
  const serverId = fleet.serverIds.get("acc-a")!;
  const instance = () => panel.db("instances").where({ server_id: serverId, name: "main" }).first();
  const syncLines = () => agent.stderr().match(/.*"msg":"synced with the panel".*/g) ?? [];
  const before = await instance();
  const syncsBeforeChange = syncLines().length;
  const instanceId = await instanceIdOf("acc-a", "main");
  const change = await accounts().createChangeSet({
    selection: { selection: { case: "keys", value: { keys: [{ instanceId, user: "livingroom" }] } } },
    edits: [{ edit: { case: "setDescription", value: "Living room, new box" } }],
  });
  assert.is((await watchToEnd(change.changeSet!.id)).status, ChangeSetStatus.APPLIED);
  const after = await instance();
  assert.is.not(after.content_hash, before.content_hash, "the hash the result said the change made");
  assert.ok(after.synced_at > before.synced_at, "the instance shows as synced when the hash was taken");
  assert.is((await accounts().listAccounts({ filter: { instanceIds: [instanceId], query: "livingroom" } })).accounts[0]?.description, "Living room, new box");
  // A resync command sends the hashes of what the agent reads now: the panel asks for no snapshot.
  const syncsBefore = syncLines().length;
  const [resync] = (await owner.client(CommandService).sendCommand({ targets: [{ serverId }], kind: CommandKind.RESYNC })).commands;
  await eventually(
    async () => (await owner.client(CommandService).getCommand({ commandId: resync!.id })).command,
    (c) => c?.status === CommandStatus.SUCCEEDED,
    "the resync command",
  );
  const resyncs = (
    await eventually(
      async () => syncLines(),
      (lines) => lines.length > syncsBefore,
      "the resync's log line",
    )
  ).slice(syncsBefore);
  assert.ok(
    resyncs.every((line) => line.includes('"sent":0')),
    resyncs.join("\n"),
  );
  const now = await instance();
  assert.is(now.content_hash, after.content_hash);
  assert.equal(now.synced_at, after.synced_at, "moved by no snapshot since");
  const sinceChange = syncLines().slice(syncsBeforeChange);
  assert.ok(
    sinceChange.every((line) => line.includes('"sent":0')),
    `no snapshot sent since the change:\n${sinceChange.join("\n")}`,
  );
});

test("a hand edit on a server shows as drift and as a change outside the panel, until acknowledged", async () => {
  const instance = fleet.instance("acc-b", "main");
  const since = new Date();
  const file = join(instance.configDir, "oscam.user");
  await writeFile(file, (await readFile(file, "utf8")).replace(/(user\s*= kitchen_vu\n(?:.*\n)*?expdate\s*= )2031-12-31/, "$12032-06-30"));
  await syncedAfter("acc-b", "main", since);
  const drifted = await eventually(
    () => accounts().listAccounts({ filter: { driftedOnly: true } }),
    (page) => page.accounts.length === 1,
    "the drifted account",
  );
  assert.equal(
    drifted.accounts.map((a) => [a.serverName, a.instanceName, a.user, a.expiryDate, a.changedBy]),
    [["acc-b", "main", "kitchen_vu", "2032-06-30", "outside the panel"]],
  );
  const instanceId = await instanceIdOf("acc-b", "main");
  const { entries } = await accounts().listHistory({ of: { case: "account", value: { instanceId, user: "kitchen_vu" } } });
  assert.equal(entries[0]!.source, ChangeSource.OUTSIDE);
  assert.equal(entries[0]!.changes, [{ $typeName: "myosicam.panel.v1.FieldChange", field: "expdate", before: "2031-12-31", after: "2032-06-30" }]);
  const serverId = fleet.serverIds.get("acc-b")!;
  const listed = await owner.client(InstanceService).listInstances({ serverId });
  assert.is(listed.instances.find((i) => i.name === "main")!.driftedAccounts, 1);
  // A change set on the drifted instance still touches only its target lines.
  const text = await readFile(file, "utf8");
  const change = await accounts().createChangeSet({
    selection: { selection: { case: "keys", value: { keys: [{ instanceId, user: "bedroom" }] } } },
    edits: [{ edit: { case: "setDescription", value: "moved to the attic" } }],
  });
  assert.is((await watchToEnd(change.changeSet!.id)).status, ChangeSetStatus.APPLIED);
  assert.is((await readFile(file, "utf8")).replace(/(description\s*= )moved to the attic/, "$1Bedroom Zgemma H7"), text);
  assert.is((await accounts().acknowledgeDrift({ instanceId })).cleared, 1);
  assert.is((await accounts().listAccounts({ filter: { driftedOnly: true } })).total, 0);
  assert.is((await owner.client(InstanceService).listInstances({ serverId })).instances.find((i) => i.name === "main")!.driftedAccounts, 0);
});

test("the CLI: accounts list, change --follow, history, revert, export and import go through the operator API", async () => {
  const list = await cli<{ total: number; accounts: Array<{ server: string; user: string; state: string }> }>([
    "accounts",
    "list",
    "--where",
    "server=acc-c",
    "--where",
    "user=kitchen_vu",
    "--json",
  ]);
  assert.is(list.code, 0, list.stderr);
  assert.equal(
    list.json!.accounts.map((a) => [a.server, a.user, a.state]),
    [["acc-c", "kitchen_vu", "active"]],
  );
  const bad = await cli(["accounts", "list", "--where", "colour=blue"]);
  assert.is(bad.code, 1);
  assert.match(bad.stderr, /--where colour: not a condition; use one of server, instance/);
  const before = await fleet.instance("acc-c", "main").userFile();
  const changed = await cli<{ changeSet: { id: string; status: string; counts: { applied: number } } }>([
    "accounts",
    "change",
    "--where",
    "server=acc-c",
    "--where",
    "user=kitchen_vu",
    "--extend",
    "30d",
    "--set",
    "group=1,3",
    "--follow",
    "--json",
  ]);
  assert.is(changed.code, 0, changed.stderr);
  assert.equal([changed.json!.changeSet.status, changed.json!.changeSet.counts.applied], ["applied", 1]);
  assert.match((await fleet.instance("acc-c", "main").userFile()).toString(), /user\s*= kitchen_vu\n(?:.*\n)*?group\s*= 1,3\n(?:.*\n)*?expdate\s*= 2032-01-30/);
  const history = await cli(["accounts", "history", "--account", "acc-c/main/kitchen_vu"]);
  assert.match(history.stdout, /expdate: 2031-12-31 → 2032-01-30/);
  const reverted = await cli(["accounts", "revert", changed.json!.changeSet.id, "--follow"]);
  assert.is(reverted.code, 0, reverted.stderr);
  assert.ok((await fleet.instance("acc-c", "main").userFile()).equals(before));
  const exported = await cli(["accounts", "export", "--where", "server=acc-a"]);
  assert.is(exported.stdout.trim().split("\n").length, 41);
  const preview = await cli(["accounts", "import", "-", "--dry-run"], "server,instance,user,expiry_date\nacc-a,main,cli-box,2029-01-01\nacc-a,main,,\n");
  assert.match(preview.stdout, /line 2: acc-a\/main\/cli-box: ok\nline 3: acc-a\/main\/: user is empty\n1 valid, 1 invalid \(dry run: nothing created\)/);
});

test("a scoped operator's 'every matching account' never reaches another server", async () => {
  const scoped = await apiClientWith(panel, "accounts-scoped", Role.OPERATOR, { serverIds: [fleet.serverIds.get("acc-a")!] });
  const mine = scoped.client(AccountService);
  const page = await mine.listAccounts({ pageSize: 500 });
  assert.ok(page.total === 40 && page.accounts.every((a) => a.serverName === "acc-a"));
  const { changeSet } = await mine.createChangeSet({
    selection: { selection: { case: "filter", value: { users: ["bedroom"] } } },
    edits: [{ edit: { case: "setDescription", value: "scoped edit" } }],
  });
  assert.equal(
    changeSet!.instances.map((i) => i.serverName),
    ["acc-a", "acc-a"],
  );
  await watchToEnd(changeSet!.id).catch(() => undefined);
  // Change sets that reach other servers are not visible to it.
  const visible = await mine.listChangeSets({ pageSize: 500 });
  assert.is(visible.changeSets[0]!.id, changeSet!.id);
  assert.ok(visible.changeSets.every((c) => c.instances.every((i) => i.serverName === "acc-a")));
  assert.not.ok(visible.changeSets.some((c) => c.id === disableAndExtend.id));
  assert.is(await codeOf(() => mine.getChangeSet({ changeSetId: disableAndExtend.id })), "NotFound");
  const other = await instanceIdOf("acc-b", "main");
  assert.is(await codeOf(() => mine.createChangeSet({ creations: [{ instanceIds: [other], user: "sneaky", fields: {} }] })), "NotFound");
});

test("CSV: export without passwords; import previews invalid rows and creates the valid ones", async () => {
  let csv = "";
  for await (const part of accounts().exportAccounts({ filter: { serverIds: [fleet.serverIds.get("acc-c")!] } }))
    csv += Buffer.from(part.chunk).toString("utf8");
  const lines = csv.trim().split("\n");
  assert.is(lines[0], "server,instance,user,enabled,state,groups,caid,ident,expiry_date,description,changed_at,changed_by");
  assert.is(lines.length, 21);
  assert.not.match(csv, /lr-7Hq2x9vT|br-Kd81mQzp/, "no password");
  const input = [
    "server,instance,user,password,groups,expiry_date,description",
    "acc-c,main,csv-one,c1-Secret,1,2030-05-01,first",
    'acc-c,main,csv-two,c2-Secret,"1,2",2030-13-01,bad date',
    "acc-c,nowhere,csv-three,c3-Secret,1,,no such instance",
    "acc-c,main,bedroom,x,1,,exists",
  ].join("\n");
  const preview = await accounts().importAccounts({ csv: input, dryRun: true });
  assert.equal([preview.valid, preview.invalid], [1, 3]);
  assert.equal(
    preview.rows.map((r) => [r.line, r.user, r.error !== ""]),
    [
      [2, "csv-one", false],
      [3, "csv-two", true],
      [4, "csv-three", true],
      [5, "bedroom", true],
    ],
  );
  assert.match(preview.rows[1]!.error, /expdate/);
  assert.match(preview.rows[2]!.error, /no instance "nowhere"/);
  assert.is(await codeOf(() => accounts().importAccounts({ csv: input })), "InvalidArgument");
  const imported = await accounts().importAccounts({ csv: input, skipInvalid: true });
  const importDone = await watchToEnd(imported.changeSet!.id);
  assert.is(importDone.status, ChangeSetStatus.APPLIED, JSON.stringify(importDone.instances));
  assert.match((await fleet.instance("acc-c", "main").userFile()).toString(), /user\s*= csv-one/);
});

test.run();
