import { Code, ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentHealth } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { CommandKind } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { CommandService } from "../../gen/myosicam/panel/v1/command_pb.js";
import { Role } from "../../gen/myosicam/panel/v1/common_pb.js";
import { FleetService, type FleetEvent, type WatchEventsResponse } from "../../gen/myosicam/panel/v1/fleet_pb.js";
import { ServerService } from "../../gen/myosicam/panel/v1/server_pb.js";
import { toJson } from "@bufbuild/protobuf";
import { AuthService } from "../../gen/myosicam/panel/v1/auth_pb.js";
import { FleetEventSchema } from "../../gen/myosicam/panel/v1/fleet_pb.js";
import { apiClientWith, ownerApi, sessionApi, type OperatorApi } from "../helpers/operator-api.js";

/** Gives the owner a known password (the first start's one is printed, not kept). */
async function ownerPassword(): Promise<string> {
  const { hashPassword } = await import("../../services/lib/passwords.js");
  await panel
    .db("operators")
    .where({ email: "owner@localhost" })
    .update({ password_hash: await hashPassword("owner-test-password"), temporary_login: false });
  return "owner-test-password";
}
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("FleetService.WatchEvents: live fleet changes per scope, resumable across a panel restart");

let panel: PanelHost;
test.before(async () => {
  panel = await startPanelHost("fleet_events");
  await panel.setLicense(100, 100);
});
test.after(() => panel.stop());

/** A watcher: reads the stream in the background and lets a test wait for what it expects. */
function watch(api: OperatorApi, after = 0n) {
  const controller = new AbortController();
  const messages: WatchEventsResponse[] = [];
  const waiters = new Set<() => void>();
  let failure: ConnectError | undefined;
  const done = (async () => {
    try {
      for await (const m of api.client(FleetService).watchEvents({ after }, { signal: controller.signal, timeoutMs: 0 })) {
        messages.push(m);
        for (const w of waiters) w();
      }
    } catch (err) {
      if (!controller.signal.aborted) failure = ConnectError.from(err);
      for (const w of waiters) w();
    }
  })();
  const events = () => messages.flatMap((m) => m.events);
  return {
    messages,
    events,
    cursor: () => messages.at(-1)?.cursor ?? 0n,
    failure: () => failure,
    /** Resolves once an event matches (or fails after 20 s, naming `what`). */
    async until(what: string, match: (e: FleetEvent) => boolean): Promise<FleetEvent> {
      const deadline = setTimeout(() => {
        for (const w of waiters) w();
      }, 20_000);
      try {
        for (;;) {
          const found = events().find(match);
          if (found) return found;
          if (failure) throw failure;
          const before = messages.length;
          await new Promise<void>((resolve) => {
            const wake = () => {
              waiters.delete(wake);
              resolve();
            };
            waiters.add(wake);
          });
          if (messages.length === before && !failure)
            throw new Error(
              `no event for ${what} within 20 s; got ${events()
                .map((e) => e.change.case)
                .join(", ")}`,
            );
        }
      } finally {
        clearTimeout(deadline);
      }
    },
    /** Resolves with the first message (the cursor). */
    async first(): Promise<WatchEventsResponse> {
      while (messages.length === 0) {
        if (failure) throw failure;
        await new Promise<void>((resolve) => {
          const wake = () => {
            waiters.delete(wake);
            resolve();
          };
          waiters.add(wake);
        });
      }
      return messages[0]!;
    },
    async stop() {
      controller.abort();
      await done;
    },
  };
}

test("a server's status, a command's progress and an instance's runtime reach a watching page as they happen", async () => {
  const owner = await ownerApi(panel);
  const watcher = watch(owner);
  const first = await watcher.first();
  assert.equal([first.events.length, first.reset], [0, false], "the first message carries the cursor to resume from");
  const { id, client } = await panel.enroll("live-1");
  const online = await watcher.until("the registration", (e) => e.serverId === id && e.change.case === "server" && e.change.value.status === "online");
  assert.is(online.change.case === "server" && online.change.value.name, "live-1");

  const [command] = (await owner.client(CommandService).sendCommand({ targets: [{ serverId: id }], kind: CommandKind.RESYNC })).commands;
  await watcher.until("the command", (e) => e.change.case === "command" && e.change.value.commandId === command!.id && e.change.value.status === "pending");

  await client.sync({
    present: [{ name: "main", contentHash: "b".repeat(64) }],
    snapshots: [{ ref: { name: "main", contentHash: "b".repeat(64) }, configDir: "/etc/oscam", runtime: { running: true, pid: 77, uptimeSeconds: 5n } }],
  });
  await watcher.until("the new instance", (e) => e.change.case === "instance" && e.change.value.pid === 77);
  await client.heartbeat({
    uptimeSeconds: 61n,
    health: AgentHealth.OK,
    agentVersion: "0.1.0",
    instances: [{ name: "main", resources: { cpuPercent: 0, rssMb: 0, diskMb: 0 }, runtime: { running: false, pid: 0, uptimeSeconds: 0n } }],
  });
  await watcher.until("the instance stopping", (e) => e.change.case === "instance" && e.change.value.running === false);
  const ids = watcher.events().map((e) => e.id);
  assert.equal(
    ids,
    [...ids].sort((a, b) => (a < b ? -1 : 1)),
    "in order",
  );
  assert.is(new Set(ids).size, ids.length, "each once");
  await watcher.stop();
});

test("a browser's JSON stream and a binary one carry the same events", async () => {
  const owner = await ownerApi(panel);
  const binary = watch(owner);
  const browser = sessionApi(panel);
  await browser.client(AuthService).login({ email: "owner@localhost", password: await ownerPassword() });
  const json = watch(browser);
  await Promise.all([binary.first(), json.first()]);
  const { server } = await owner.client(ServerService).addServer({ name: "both-codecs", tags: ["x"] });
  const a = await binary.until("the server in binary", (e) => e.serverId === server!.id);
  const b = await json.until("the server in JSON", (e) => e.serverId === server!.id);
  assert.equal(toJson(FleetEventSchema, a), toJson(FleetEventSchema, b));
  assert.equal(a.change.case === "server" && a.change.value.tags, ["x"]);
  await binary.stop();
  await json.stop();
});

test("a scoped watcher sees only its servers' events", async () => {
  const owner = await ownerApi(panel);
  const scoped = await apiClientWith(panel, "events-eu", Role.VIEWER, { tags: ["eu"] });
  const watcher = watch(scoped);
  await watcher.first();
  const servers = owner.client(ServerService);
  await servers.addServer({ name: "events-us", tags: ["us"] });
  const eu = (await servers.addServer({ name: "events-eu", tags: ["eu"] })).server!;
  await watcher.until("the eu server", (e) => e.serverId === eu.id);
  assert.ok(
    watcher.events().every((e) => e.serverId === eu.id),
    "nothing about other servers",
  );
  await watcher.stop();
});

test("a watcher resumes from its cursor after a panel restart and gets what happened meanwhile", async () => {
  const owner = await ownerApi(panel);
  const watcher = watch(owner);
  const { server } = await owner.client(ServerService).addServer({ name: "restart-1" });
  await watcher.until("the new server", (e) => e.serverId === server!.id);
  const cursor = watcher.cursor();
  await panel.pause();
  await watcher.stop().catch(() => {});
  // While the panel is down, the server changes (as another replica, or an operator's SQL, would).
  await panel.db("servers").where({ id: server!.id }).update({ status: "revoked" });
  await panel.resume();
  const resumed = watch(await ownerApi(panel), cursor);
  const missed = await resumed.until("the change made while the panel was down", (e) => e.change.case === "server" && e.change.value.status === "revoked");
  assert.is(missed.serverId, server!.id);
  assert.not.ok(
    resumed.events().some((e) => e.id <= cursor),
    "nothing before the cursor again",
  );
  await resumed.stop();
});

test("a cursor older than the events kept says reset, with a cursor to go on from", async () => {
  await panel
    .db("fleet_events")
    .where("id", "<", (await panel.db("fleet_events").max("id as m").first())!.m)
    .delete();
  const watcher = watch(await ownerApi(panel), 1n);
  const first = await watcher.first();
  assert.ok(first.reset);
  assert.ok(first.cursor > 1n);
  await watcher.stop();
});

test("WatchEvents needs a signed-in caller", async () => {
  const err = await (async () => {
    const { createClient } = await import("@connectrpc/connect");
    const { createConnectTransport } = await import("@connectrpc/connect-node");
    const anonymous = createClient(FleetService, createConnectTransport({ baseUrl: panel.url, httpVersion: "2", nodeOptions: { ca: panel.ca } }));
    for await (const _ of anonymous.watchEvents({})) break;
  })().catch((e: unknown) => ConnectError.from(e));
  assert.is((err as ConnectError).code, Code.Unauthenticated);
});

test.run();
