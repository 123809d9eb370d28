import { suite } from "uvu";
import * as assert from "uvu/assert";
import { CommandKind } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { CommandService, CommandStatus } from "../../gen/myosicam/panel/v1/command_pb.js";
import { ServerService } from "../../gen/myosicam/panel/v1/server_pb.js";
import { codeOf, ownerApi, type OperatorApi } from "../helpers/operator-api.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("CommandService: one kind to many servers and instances, list, get, and a watch that ends when all are final");

let panel: PanelHost;
let owner: OperatorApi;
let ids: string[];
test.before(async () => {
  panel = await startPanelHost("commands_api");
  await panel.setLicense(10, 10);
  owner = await ownerApi(panel);
  ids = [(await panel.enroll("cmd-a")).id, (await panel.enroll("cmd-b")).id];
});
test.after(() => panel.stop());

test("one call creates a command per target, in the order given, each sealed and pending", async () => {
  const { commands } = await owner.client(CommandService).sendCommand({
    targets: [
      { serverId: ids[0]!, instance: "main" },
      { serverId: ids[1]!, instance: "main" },
      { serverId: ids[1]!, instance: "backup" },
    ],
    kind: CommandKind.RESTART,
  });
  assert.equal(
    commands.map((c) => [c.serverName, c.instance, c.status, c.kind]),
    [
      ["cmd-a", "main", CommandStatus.PENDING, CommandKind.RESTART],
      ["cmd-b", "main", CommandStatus.PENDING, CommandKind.RESTART],
      ["cmd-b", "backup", CommandStatus.PENDING, CommandKind.RESTART],
    ],
  );
  const row = await panel.db("audit_log").where({ action: "CommandService.SendCommand" }).orderBy("id", "desc").first();
  assert.equal(row.target.split(" ").sort(), commands.map((c) => `command:${c.id}`).sort(), "the audit names every command");
});

test("a payload must match its kind, and an unknown server refuses the whole call", async () => {
  const commands = owner.client(CommandService);
  const before = await panel.db("commands").count("* as n");
  assert.is(await codeOf(() => commands.sendCommand({ targets: [{ serverId: ids[0]! }], kind: CommandKind.APPLY_ACCOUNTS })), "InvalidArgument");
  assert.is(
    await codeOf(() =>
      commands.sendCommand({
        targets: [{ serverId: ids[0]! }],
        kind: CommandKind.RESYNC,
        payload: { case: "applyConfig", value: { changes: [{ section: "global", key: "nice", change: { case: "set", value: "1" } }] } },
      }),
    ),
    "InvalidArgument",
  );
  assert.is(
    await codeOf(() => commands.sendCommand({ targets: [{ serverId: ids[0]! }, { serverId: crypto.randomUUID() }], kind: CommandKind.RESYNC })),
    "NotFound",
  );
  assert.equal(await panel.db("commands").count("* as n"), before, "nothing was created");
});

test("list filters by server, status and kind and pages by cursor; get answers one", async () => {
  const commands = owner.client(CommandService);
  await commands.sendCommand({ targets: [{ serverId: ids[0]! }], kind: CommandKind.RESYNC });
  const all: string[] = [];
  let pageToken = "";
  do {
    const page = await commands.listCommands({ pageSize: 2, pageToken });
    all.push(...page.commands.map((c) => c.id));
    pageToken = page.nextPageToken;
  } while (pageToken);
  assert.is(all.length, 4);
  assert.is(new Set(all).size, 4);
  assert.is((await commands.listCommands({ serverId: ids[1]! })).commands.length, 2);
  assert.is((await commands.listCommands({ kind: CommandKind.RESYNC })).commands.length, 1);
  assert.is((await commands.listCommands({ statuses: [CommandStatus.SUCCEEDED] })).commands.length, 0);
  const one = await commands.getCommand({ commandId: all[0]! });
  assert.is(one.command!.id, all[0]);
  assert.is(await codeOf(() => commands.getCommand({ commandId: crypto.randomUUID() })), "NotFound");
});

test("watch streams the commands as they are, then each change, and ends once all are final", async () => {
  const commands = owner.client(CommandService);
  const { commands: sent } = await commands.sendCommand({ targets: ids.map((serverId) => ({ serverId })), kind: CommandKind.RELOAD });
  const seen: Array<[string, CommandStatus]> = [];
  let done = false;
  const watching = (async () => {
    for await (const update of commands.watchCommands({ commandIds: sent.map((c) => c.id) })) {
      for (const c of update.commands) seen.push([c.id, c.status]);
      done = update.done;
      if (seen.length === 2) {
        // The agents' results, as ReportResult would write them.
        await panel.db("commands").where({ id: sent[0]!.id }).update({ status: "succeeded", finished_at: panel.db.fn.now(), result: "reloaded" });
        await panel.db("commands").where({ id: sent[1]!.id }).update({ status: "failed", finished_at: panel.db.fn.now(), result: "no such instance" });
      }
    }
  })();
  await watching;
  assert.ok(done, "the last message says done, and the stream ends");
  const last = new Map(seen);
  assert.equal(
    sent.map((c) => last.get(c.id)),
    [CommandStatus.SUCCEEDED, CommandStatus.FAILED],
  );
  assert.equal(
    seen.slice(0, 2).map((s) => s[1]),
    [CommandStatus.PENDING, CommandStatus.PENDING],
  );
});

test("a removed server's commands go with it", async () => {
  const servers = owner.client(ServerService);
  await servers.removeServer({ serverId: ids[0]! });
  assert.is((await owner.client(CommandService).listCommands({ serverId: ids[0]! })).commands.length, 0);
});

test.run();
