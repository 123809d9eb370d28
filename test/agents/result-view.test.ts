import { createHash } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  AccountChangeStatus,
  type AgentService,
  CommandOutcome,
  type ReportResultRequestSchema,
  SyncRequestSchema,
} from "../../gen/myosicam/agent/v1/agent_pb.js";
import { AccountSchema } from "../../gen/myosicam/agent/v1/snapshot_pb.js";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { recordAccountResults } from "../../services/agents/change-sets.js";
import { AccountService } from "../../gen/myosicam/panel/v1/account_pb.js";
import { type Client, createClient } from "@connectrpc/connect";
import { eventually } from "../helpers/eventually.js";
import { ownerApi, type OperatorApi } from "../helpers/operator-api.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("the account table follows the results of a change set's changes, before the resync that shows them");

let panel: PanelHost;
let owner: OperatorApi;
let agent: { id: string; client: Client<typeof AgentService> };
let instanceId: string;
const accounts = () => owner.client(AccountService);

type AccountInit = MessageInitShape<typeof AccountSchema> & { user: string };
const account = (a: AccountInit) => ({
  enabled: true,
  groups: [1],
  caid: "",
  ident: "",
  expiryDate: "",
  unreadableExpiry: "",
  description: "",
  extra: [],
  ...a,
});
/** The agent's view of its one instance: these accounts, under a hash that changes with them. */
const sync = (list: AccountInit[], webifPassword = "") => {
  const hash = createHash("sha256")
    .update(JSON.stringify([list, webifPassword]))
    .digest("hex");
  return agent.client.sync(
    create(SyncRequestSchema, {
      present: [{ name: "main", contentHash: hash }],
      snapshots: [
        {
          ref: { name: "main", contentHash: hash },
          configDir: "/etc/oscam",
          accounts: list.map(account),
          webif: { host: "127.0.0.1", port: 8888, username: "admin", password: webifPassword },
        },
      ],
    }),
  );
};
const row = (user: string) => panel.db("accounts").where({ instance_id: instanceId, username: user }).first();
const outsideChanges = async () => Number((await panel.db("account_history").where({ instance_id: instanceId, source: "outside" }).count({ n: "*" }))[0]!.n);

/** Creates a change set over the named accounts and answers the command that carries it. */
async function changeSet(users: string[], edits: Parameters<ReturnType<typeof accounts>["createChangeSet"]>[0]["edits"]): Promise<{ id: string }> {
  const { changeSet: created } = await accounts().createChangeSet({
    description: `test: ${users.join(", ")}`,
    selection: { selection: { case: "keys", value: { keys: users.map((user) => ({ instanceId, user })) } } },
    edits,
  });
  const item = await panel.db("change_set_items").where({ change_set_id: created!.id }).whereNotNull("command_id").first();
  return { id: item.command_id };
}

/** A report as the result writer hands it to recordAccountResults: one applied change, carrying the account as it now is. */
const storedReport = (command: { id: string }, shown: AccountInit, contentHash?: { before: string; after: string }) => ({
  serverId: agent.id,
  commandId: command.id,
  accountResults: [
    {
      index: 0,
      status: "applied" as const,
      failureCode: "",
      detail: "",
      before: {},
      after: { description: shown.description ?? "" },
      followedBy: "",
      account: create(AccountSchema, account(shown)),
    },
  ],
  contentHash,
});

const report = (command: { id: string }, results: MessageInitShape<typeof ReportResultRequestSchema>["accountResults"]) =>
  agent.client.reportResult({ commandId: command.id, outcome: CommandOutcome.SUCCEEDED, detail: "written and reloaded by OScam", accountResults: results });

test.before(async () => {
  try {
    panel = await startPanelHost("result_view");
    await panel.setLicense(10, 10);
    owner = await ownerApi(panel);
    agent = await panel.enroll("result-view");
    await sync([
      { user: "alice", password: "al-Old-1", expiryDate: "2030-01-01" },
      { user: "bob", password: "bo-Old-1" },
      { user: "carol", password: "ca-Old-1" },
    ]);
    instanceId = (await panel.db("instances").where({ server_id: agent.id, name: "main" }).first()).id;
  } catch (err) {
    console.error("the setup of this file failed:", err);
    throw err;
  }
});
test.after(async () => {
  await panel?.stop();
});

test("an applied change's result carrying the account updates the table at once (password sealed), a delete removes the row, and the resync finds nothing outside the panel", async () => {
  const extend = await changeSet(["alice"], [{ edit: { case: "extendExpiryDays", value: 30 } }, { edit: { case: "setPassword", value: "al-New-2" } }]);
  await report(extend, [
    {
      index: 0,
      status: AccountChangeStatus.APPLIED,
      before: {
        entries: [
          { key: "pwd", value: "al-Old-1" },
          { key: "expdate", value: "2030-01-01" },
        ],
      },
      after: {
        entries: [
          { key: "pwd", value: "al-New-2" },
          { key: "expdate", value: "2030-01-31" },
        ],
      },
      account: account({ user: "alice", password: "al-New-2", expiryDate: "2030-01-31" }),
    },
  ]);
  const remove = await changeSet(["carol"], [{ edit: { case: "delete", value: {} } }]);
  await report(remove, [{ index: 0, status: AccountChangeStatus.APPLIED, before: { entries: [{ key: "pwd", value: "ca-Old-1" }] }, followedBy: "" }]);

  // No sync since: the table shows the results.
  const alice = await row("alice");
  assert.is((await accounts().revealPassword({ accountId: alice.id })).password, "al-New-2", "the new password, sealed and opened again");
  assert.not.ok(alice.password.includes("al-New-2"), "stored only as an envelope");
  assert.ok(alice.change_set_id, "the change set that changed it");
  assert.not.ok(alice.drifted);
  assert.is(await row("carol"), undefined, "the deleted account is gone from the table");
  const listed = await accounts().listAccounts({ filter: { instanceIds: [instanceId] }, pageSize: 10 });
  assert.equal(
    listed.accounts.map((a) => [a.user, a.expiryDate]),
    [
      ["alice", "2030-01-31"],
      ["bob", ""],
    ],
  );

  // The resync shows the same: nothing to explain, nothing outside the panel.
  await sync([
    { user: "alice", password: "al-New-2", expiryDate: "2030-01-31" },
    { user: "bob", password: "bo-Old-1" },
  ]);
  assert.is(await outsideChanges(), 0, "no change outside the panel recorded");
  assert.not.ok((await row("alice")).drifted);
  const items = await panel.db("change_set_items").where({ instance_id: instanceId }).select("username", "status", "confirmed").orderBy("username");
  assert.equal(
    items.map((i) => [i.username, i.status, i.confirmed]),
    [
      ["alice", "applied", true],
      ["carol", "applied", true],
    ],
  );
});

test("a result without the account (an older agent) leaves the table to the resync, which the change set still explains", async () => {
  const disable = await changeSet(["bob"], [{ edit: { case: "disable", value: {} } }]);
  await report(disable, [
    {
      index: 0,
      status: AccountChangeStatus.APPLIED,
      before: { entries: [{ key: "pwd", value: "bo-Old-1" }] },
      after: {
        entries: [
          { key: "pwd", value: "bo-Old-1" },
          { key: "disabled", value: "1" },
        ],
      },
    },
  ]);
  assert.ok((await row("bob")).enabled, "the table waits for the snapshot");
  await sync([
    { user: "alice", password: "al-New-2", expiryDate: "2030-01-31" },
    { user: "bob", password: "bo-Old-1", enabled: false },
  ]);
  const bob = await eventually(
    () => row("bob"),
    (r) => !r.enabled,
    "the resync's view of bob",
  );
  assert.not.ok(bob.drifted, "explained by the change set, not drift");
  assert.is(await outsideChanges(), 0);
});

test("a result whose account is not the item's user, or of a failed change, leaves the table alone", async () => {
  const change = await changeSet(["alice"], [{ edit: { case: "setDescription", value: "front room" } }]);
  await report(change, [
    {
      index: 0,
      status: AccountChangeStatus.APPLIED,
      before: { entries: [] },
      after: { entries: [{ key: "description", value: "front room" }] },
      account: account({ user: "mallory", password: "x", description: "front room" }),
    },
  ]);
  assert.is(await row("mallory"), undefined, "no row for an account the change was not about");
  assert.is((await row("alice")).description, "", "alice waits for the resync");
  const failing = await changeSet(["bob"], [{ edit: { case: "setDescription", value: "bedroom" } }]);
  await report(failing, [
    {
      index: 0,
      status: AccountChangeStatus.FAILED,
      failureCode: "validation_failed",
      detail: "refused",
      account: account({ user: "bob", password: "bo-Old-1", description: "bedroom" }),
    },
  ]);
  assert.is((await row("bob")).description, "", "a failed change shows nothing");
});

test("results of two changes to one account stored in one batch: the table shows the one the agent made last", async () => {
  const first = await changeSet(["bob"], [{ edit: { case: "setDescription", value: "first" } }]);
  const second = await changeSet(["bob"], [{ edit: { case: "setDescription", value: "second" } }]);
  const result = (command: { id: string }, description: string) => storedReport(command, { user: "bob", password: "bo-Old-1", enabled: false, description });
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));
  // In the order they arrived: the first command's report, then the second's.
  await panel.db.transaction((trx) => recordAccountResults(trx, crypto, [result(first, "first"), result(second, "second")]));
  assert.is((await row("bob")).description, "second");
  // The other way round: whatever order the database finds the items in, arrival order decides.
  const third = await changeSet(["bob"], [{ edit: { case: "setDescription", value: "third" } }]);
  const fourth = await changeSet(["bob"], [{ edit: { case: "setDescription", value: "fourth" } }]);
  await panel.db.transaction((trx) => recordAccountResults(trx, crypto, [result(fourth, "fourth"), result(third, "third")]));
  assert.is((await row("bob")).description, "third");
});

test("a resync with the same WebIF password keeps its stored envelope (not rewritten); a new password is sealed anew", async () => {
  const accountsNow = [
    { user: "alice", password: "al-New-2", expiryDate: "2030-01-31" },
    { user: "bob", password: "bo-Old-1", enabled: false },
  ];
  const install = () => panel.db("oscam_installs").where({ server_id: agent.id, instance_name: "main" }).first();
  await sync(accountsNow, "wp-First-1");
  const first = await install();
  await sync([...accountsNow, { user: "erin", password: "er-1" }], "wp-First-1");
  const again = await install();
  assert.is(again.webif_password, first.webif_password, "the same envelope");
  await sync(accountsNow, "wp-Second-2");
  const changed = await install();
  assert.is.not(changed.webif_password, first.webif_password);
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));
  const opened = await crypto.decrypt({ envelope: changed.webif_password, context: { table: "oscam_installs", column: "webif_password", rowId: changed.id } });
  assert.is(Buffer.from(opened.plaintext).toString("utf8"), "wp-Second-2");
});

test("a result's content hash change is taken when the panel holds its `before` (the agent is told: no sync needs to follow), in arrival order within a batch; from another hash, or with an account the view cannot follow, it is not", async () => {
  const storedHash = async () => (await panel.db("instances").where({ id: instanceId }).first()).content_hash as string;
  const syncedAt = async () => ((await panel.db("instances").where({ id: instanceId }).first()).synced_at as Date).getTime();
  const hashOf = (text: string) => createHash("sha256").update(text).digest("hex");
  const alice = (description: string) => account({ user: "alice", password: "al-New-2", expiryDate: "2030-01-31", description });
  const applied = (description: string, withAccount = true) => ({
    index: 0,
    status: AccountChangeStatus.APPLIED,
    before: { entries: [] },
    after: { entries: [{ key: "description", value: description }] },
    ...(withAccount ? { account: alice(description) } : {}),
  });
  const describe = (description: string) => changeSet(["alice"], [{ edit: { case: "setDescription", value: description } }]);
  /** Reports one change of alice's description, with what it says the change did to the hash. */
  const reportDescription = (command: { id: string }, description: string, contentHash: { before: string; after: string }, withAccount = true) =>
    agent.client.reportResult({
      commandId: command.id,
      outcome: CommandOutcome.SUCCEEDED,
      detail: "written and reloaded by OScam",
      accountResults: [applied(description, withAccount)],
      contentHash,
    });
  const resendFor = async (hash: string) => (await agent.client.sync({ present: [{ name: "main", contentHash: hash }] })).resend;

  const held = await storedHash();
  // As if the snapshot had been stored an hour ago: taking the hash says the panel holds the instance now.
  await panel
    .db("instances")
    .where({ id: instanceId })
    .update({ synced_at: panel.db.raw("now() - interval '1 hour'") });
  const syncedBefore = await syncedAt();
  const hall = await describe("hall");
  const hallAnswer = await reportDescription(hall, "hall", { before: held, after: hashOf("hall") });
  assert.is(await storedHash(), hashOf("hall"));
  assert.ok((await syncedAt()) - syncedBefore >= 3_600_000 - 60_000, "the instance shows as synced when its hash was taken");
  assert.ok(hallAnswer.contentHashTaken, "the agent is told: no sync needs to follow");
  assert.equal(await resendFor(hashOf("hall")), [], "the panel holds the instance as the agent has it: no snapshot asked for");
  assert.is((await row("alice")).description, "hall");
  const syncedAfterHall = await syncedAt();

  const porch = await describe("porch");
  const porchAnswer = await reportDescription(porch, "porch", { before: hashOf("a snapshot the panel never stored"), after: hashOf("porch") });
  assert.is(await storedHash(), hashOf("hall"), "from a hash the panel does not hold: not taken");
  assert.is(await syncedAt(), syncedAfterHall, "a hash not taken does not move the time of the last sync");
  assert.not.ok(porchAnswer.contentHashTaken, "the agent is told, and sends the snapshot");
  assert.equal(await resendFor(hashOf("porch")), ["main"], "the resync is asked for its snapshot");
  assert.is((await row("alice")).description, "porch", "the account itself still follows the result");

  const attic = await describe("attic");
  const atticAnswer = await reportDescription(attic, "attic", { before: hashOf("hall"), after: hashOf("attic") }, false);
  assert.is(await storedHash(), hashOf("hall"), "an applied change the view cannot follow: the hash waits for the snapshot too");
  assert.is(await syncedAt(), syncedAfterHall);
  assert.not.ok(atticAnswer.contentHashTaken);
  const again = await reportDescription(hall, "hall", { before: held, after: hashOf("hall") });
  assert.not.ok(again.contentHashTaken, "a report sent again changes nothing");
  assert.is(await storedHash(), hashOf("hall"));

  // Two reports of one instance in one batch: the second starts from the first one's `after`.
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));
  const first = await describe("cellar");
  const second = await describe("garden");
  const result = (command: { id: string }, description: string, before: string) =>
    storedReport(command, alice(description), { before, after: hashOf(description) });
  await panel.db.transaction((trx) => recordAccountResults(trx, crypto, [result(first, "cellar", hashOf("hall")), result(second, "garden", hashOf("cellar"))]));
  assert.is(await storedHash(), hashOf("garden"));
  assert.is((await row("alice")).description, "garden");
});

test.run();
