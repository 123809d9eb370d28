import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { createContextValues, createHandlerContext } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentService, type Command, CommandKind, CommandSchema, SubscribeRequestSchema } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { createCommandHub, selectServersWithDueCommands } from "../../services/agents/commands.js";
import { createDeliveryWindow } from "../../services/agents/delivery-window.js";
import { createAgentService } from "../../services/agents/service.js";
import { callerKey } from "../../services/lib/hmac/server-auth.js";
import { eventually } from "../helpers/eventually.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("held command streams claim when woken: by an announcement, or by the hub's sweep for what one missed");

let panel: PanelHost;
test.before(async () => {
  panel = await startPanelHost("command_hub");
});
test.after(async () => {
  await panel.stop();
});

const addServer = async (name: string) => {
  const id: string = randomUUID();
  await panel.db("servers").insert({ id, name, status: "online", approved: true, created_by: "test" });
  return id;
};
/** A command row as stored, without the NOTIFY that announces one. */
const addCommand = (serverId: string, fields: { status: string; deliveredSecondsAgo?: number; deadlineSeconds?: number }) =>
  panel.db("commands").insert({
    id: randomUUID(),
    server_id: serverId,
    kind: "resync",
    created_by: "test",
    status: fields.status,
    delivered_at: fields.deliveredSecondsAgo === undefined ? null : panel.db.raw("now() - make_interval(secs => ?)", [fields.deliveredSecondsAgo]),
    deadline: panel.db.raw("now() + make_interval(secs => ?)", [fields.deadlineSeconds ?? 3600]),
  });

test("the sweep finds servers with a command to claim: pending, or delivered long ago and unanswered; not one just delivered, answered or past its deadline", async () => {
  const pending = await addServer("due-pending");
  await addCommand(pending, { status: "pending" });
  const stale = await addServer("due-stale");
  await addCommand(stale, { status: "delivered", deliveredSecondsAgo: 600 });
  const fresh = await addServer("due-fresh");
  await addCommand(fresh, { status: "delivered", deliveredSecondsAgo: 1 });
  const answered = await addServer("due-answered");
  await addCommand(answered, { status: "succeeded", deliveredSecondsAgo: 600 });
  const expired = await addServer("due-expired");
  await addCommand(expired, { status: "pending", deadlineSeconds: -1 });
  const due = await selectServersWithDueCommands(panel.db, 25);
  assert.equal(due.filter((id) => [pending, stale, fresh, answered, expired].includes(id)).sort(), [pending, stale].sort());
});

test("a stream whose command was stored without an announcement is woken by the sweep", async () => {
  const serverId = await addServer("missed-announcement");
  const hub = createCommandHub(panel.db, panel.config.databaseUrl!, panel.logs.log, 3_600_000);
  try {
    let wakes = 0;
    const unsubscribe = hub.subscribe(serverId, () => wakes++);
    // The listener wakes every stream once when it connects.
    await eventually(
      async () => wakes,
      (n) => n === 1,
      "the listener connected",
    );
    await hub.sweep();
    assert.is(wakes, 1, "nothing is due yet");
    await addCommand(serverId, { status: "pending" });
    await hub.sweep();
    assert.is(wakes, 2, "the sweep woke the stream");
    unsubscribe();
    await hub.sweep();
    assert.is(wakes, 2, "a stream that ended is not woken");
  } finally {
    await hub.stop();
  }
});

test("a held stream asks for its commands when it opens and when woken, not at each keepalive", async () => {
  const serverId = randomUUID();
  let wake: (() => void) | undefined;
  const claims: string[] = [];
  const queued: Command[][] = [[], [create(CommandSchema, { id: "c-1", kind: CommandKind.RESYNC })]];
  const service = createAgentService({
    hub: {
      subscribe: (_id: string, w: () => void) => {
        wake = w;
        return () => (wake = undefined);
      },
    },
    claimer: {
      claim: async (id: string) => {
        claims.push(id);
        return queued.shift() ?? [];
      },
    },
    deliveries: createDeliveryWindow({ limit: 10, answerTimeoutMs: 60_000 }),
    keepaliveMs: 10,
  } as unknown as Parameters<typeof createAgentService>[0]);
  const call = new AbortController();
  const ctx = createHandlerContext({
    service: AgentService,
    method: AgentService.method.subscribe,
    protocolName: "connect",
    requestMethod: "POST",
    url: "https://panel.test/myosicam.agent.v1.AgentService/Subscribe",
    requestSignal: call.signal,
    contextValues: createContextValues().set(callerKey, { id: serverId, active: true, secrets: [], allowedProcedures: [] }),
  });
  const stream = service.subscribe!(create(SubscribeRequestSchema, {}), ctx)[Symbol.asyncIterator]();
  const next = async () => ((await stream.next()).value as { message: { case: string; value: { id?: string } } }).message;
  assert.is((await next()).case, "keepalive", "a keepalive at once");
  for (let i = 0; i < 5; i++) assert.is((await next()).case, "keepalive");
  assert.equal(claims, [serverId], "one claim, when the stream opened; none at the five keepalives since");
  wake!();
  const message = await next();
  assert.is(message.case, "command");
  assert.is(message.value.id, "c-1");
  assert.is(claims.length, 2, "woken: claimed once more");
  call.abort();
  await stream.return?.(undefined);
});

test.run();
