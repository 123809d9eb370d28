import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentHealth, type AgentService, CommandOutcome } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { createCommands } from "../../services/agents/commands.js";
import { CommandKind } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { CommandService, CommandStatus } from "../../gen/myosicam/panel/v1/command_pb.js";
import { ServerService } from "../../gen/myosicam/panel/v1/server_pb.js";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { enrollOnUp, operatorTransport, startUpProcess } from "../helpers/up-process.js";
import { eventually } from "../helpers/eventually.js";
import { getHttp2 } from "../helpers/https.js";
import { type PanelHost, startPanelHostBehindDatabaseRelay } from "../helpers/panel-host.js";
import type { TcpRelay } from "../helpers/tcp-relay.js";

/**
 * The panel's PostgreSQL (an external server, reached through a relay that the test takes down:
 * every connection cut, new ones refused, as a killed server looks from the panel) goes away for
 * a few seconds while 10 agents heartbeat and report results as fast as they can. The embedded
 * PostgreSQL killed under a running panel is test/panel-process.test.ts.
 */
const test = suite("PostgreSQL killed while the panel serves: Unavailable meanwhile, said once, recovered, nothing accepted lost");

const agentCount = 10;
const outageMs = 3000;
let panel: PanelHost;
let relay: TcpRelay;

test.before(async () => {
  ({ panel, relay } = await startPanelHostBehindDatabaseRelay("database_killed"));
  await panel.setLicense(50, 50);
});
test.after(async () => {
  await panel?.stop();
  await relay?.stop();
});

/** Agents heartbeating and reporting results as fast as they can; what was answered, and what was accepted. */
function keepBusy(agents: ReadonlyArray<{ id: string; client: Client<typeof AgentService> }>, pending: Map<string, string[]>) {
  const codes = new Map<string, number>();
  const lastAccepted = new Map<string, number>();
  const acceptedResults: string[] = [];
  let running = true;
  const count = (code: string) => codes.set(code, (codes.get(code) ?? 0) + 1);
  const loops = agents.map(async (a) => {
    while (running) {
      const sentAt = Date.now();
      try {
        await a.client.heartbeat({ uptimeSeconds: 5n, health: AgentHealth.OK, agentVersion: "0.1.0" }, { timeoutMs: 15_000 });
        count("ok");
        lastAccepted.set(a.id, sentAt);
      } catch (err) {
        count(Code[ConnectError.from(err).code] ?? "unknown");
      }
      const commandId = pending.get(a.id)![0];
      if (commandId) {
        try {
          await a.client.reportResult({ commandId, outcome: CommandOutcome.SUCCEEDED, detail: "done" }, { timeoutMs: 15_000 });
          count("ok");
          acceptedResults.push(commandId);
          pending.get(a.id)!.shift();
        } catch (err) {
          count(Code[ConnectError.from(err).code] ?? "unknown");
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  return {
    codes,
    lastAccepted,
    acceptedResults,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

test("heartbeats and results during an outage: each answered ok or Unavailable, /readyz says so, the log says it once, and every accepted one is stored", async () => {
  const agents = [];
  for (let i = 0; i < agentCount; i++) agents.push(await panel.enroll(`db-killed-${i}`));
  const crypto = createClient(CryptoService, panel.host.transportFor(CryptoService));
  const pending = new Map<string, string[]>();
  for (const a of agents) {
    const created = await createCommands(panel.db, crypto, { serverIds: Array(30).fill(a.id), kind: "resync", createdBy: "test" });
    pending.set(
      a.id,
      created.map((c) => c.id),
    );
  }

  const busy = keepBusy(agents, pending);
  await new Promise((r) => setTimeout(r, 500));
  const logLinesBefore = panel.logs.lines().length;
  await relay.down();
  const downAt = performance.now();
  const ready = await eventually(
    () => getHttp2(`${panel.url}/readyz`, panel.ca),
    (r) => r.status === 503,
    "/readyz to say the database is gone",
  );
  assert.is(JSON.parse(ready.body).checks.panelDatabase.reachable, false, ready.body);
  await new Promise((r) => setTimeout(r, Math.max(0, outageMs - (performance.now() - downAt))));
  await relay.up();
  const upAt = performance.now();
  await eventually(
    () => getHttp2(`${panel.url}/readyz`, panel.ca),
    (r) => r.status === 200,
    "/readyz to say ready again",
  );
  // It recovers by itself: heartbeats are accepted again.
  const okBefore = busy.codes.get("ok") ?? 0;
  await eventually(
    async () => busy.codes.get("ok") ?? 0,
    (n) => n > okBefore + agentCount,
    "calls to be accepted again",
  );
  const recoveredMs = performance.now() - upAt;
  await busy.stop();
  const { codes, lastAccepted, acceptedResults } = busy;

  // Every accepted heartbeat and result is in the database.
  const rows = await panel.db("servers").whereIn(
    "id",
    agents.map((a) => a.id),
  );
  const behind = rows.filter((r) => new Date(r.last_seen_at).getTime() < lastAccepted.get(r.id)! - 1000).map((r) => r.name);
  const results = await panel.db("commands").whereIn("id", acceptedResults).select("id", "status");
  const notStored = acceptedResults.filter((id) => results.find((r) => r.id === id)?.status !== "succeeded");

  const during = panel.logs.lines().slice(logLinesBefore);
  const said = during.filter((l) => String(l.msg).startsWith("the database cannot be reached")).length;
  const back = during.filter((l) => String(l.msg).startsWith("the database answers again")).length;
  const errorLines = during.filter((l) => Number(l.level) >= 50).map((l) => String(l.msg));
  console.log(
    `faults: PostgreSQL gone ${(outageMs / 1000).toFixed(0)} s under ${agentCount} busy agents: answers ${[...codes].map(([c, n]) => `${c} ${n}`).join(", ")}; ` +
      `accepted again ${(recoveredMs / 1000).toFixed(1)} s after it was back; ${acceptedResults.length} results accepted, ${notStored.length} lost; ` +
      `log: ${said} line when it went, ${back} when it came back, ${errorLines.length} error lines`,
  );
  assert.equal(
    [...codes.keys()].filter((c) => c !== "ok" && c !== "Unavailable"),
    [],
    "every call was answered ok or Unavailable",
  );
  assert.ok((codes.get("Unavailable") ?? 0) > 0, "calls were refused while the database was gone");
  assert.equal(behind, [], "every accepted heartbeat is stored");
  assert.equal(notStored, [], "every accepted result is stored");
  assert.is(said, 1, "the outage is logged once, not per call");
  assert.is(back, 1, "its end is logged once");
  assert.equal(errorLines, [], "no error line per refused call or failed batch");
});

test("the embedded PostgreSQL killed (SIGKILL) under `myosicam up`: restarted by the panel, calls ok or Unavailable meanwhile, said once, nothing accepted lost", async () => {
  // Registrations made before the license is validated count as failed ones: the limit is raised.
  const stack = await startUpProcess("embedded_db_killed", { REGISTRATION_FAILURES_PER_MINUTE: "10000" });
  try {
    const agents = [];
    for (let i = 0; i < 5; i++) agents.push(await enrollOnUp(stack, `embedded-killed-${i}`));
    const transport = await operatorTransport(stack);
    const commands = createClient(CommandService, transport);
    const pending = new Map<string, string[]>();
    for (const a of agents) {
      const sent = await commands.sendCommand({ targets: Array.from({ length: 30 }, () => ({ serverId: a.id })), kind: CommandKind.RESYNC });
      pending.set(
        a.id,
        sent.commands.map((c) => c.id),
      );
    }
    const busy = keepBusy(agents, pending);
    await new Promise((r) => setTimeout(r, 500));
    const logBefore = stack.up.stderr().length;
    const postmaster = Number((await readFile(join(stack.report.dataDir, "postgres", "postmaster.pid"), "utf8")).split("\n")[0]);
    process.kill(postmaster, "SIGKILL");
    const killedAt = performance.now();
    const url = stack.report.listeners.panel.url;
    await eventually(
      async () => JSON.parse((await getHttp2(`${url}/readyz`, stack.ca).catch(() => ({ body: "{}" }))).body),
      (r) => r.status === "ready" && r.checks?.embeddedPostgres?.restarts === 1,
      "the panel to be ready again on a restarted PostgreSQL",
      60_000,
    );
    const okBefore = busy.codes.get("ok") ?? 0;
    await eventually(
      async () => busy.codes.get("ok") ?? 0,
      (n) => n > okBefore + agents.length,
      "calls to be accepted again",
    );
    const backMs = performance.now() - killedAt;
    await busy.stop();

    const servers = createClient(ServerService, transport);
    const behind: string[] = [];
    for (const a of agents) {
      const { server } = await servers.getServer({ serverId: a.id });
      const seen = server?.lastSeenAt ? Number(server.lastSeenAt.seconds) * 1000 : 0;
      if (seen < (busy.lastAccepted.get(a.id) ?? 0) - 1000) behind.push(a.id);
    }
    const notStored: string[] = [];
    for (const id of busy.acceptedResults) {
      const { command } = await commands.getCommand({ commandId: id });
      if (command?.status !== CommandStatus.SUCCEEDED) notStored.push(id);
    }
    // The outage's end is logged by a probe (every second) and arrives through a pipe: wait for it.
    if (stack.up.stderr().slice(logBefore).includes("the database cannot be reached")) await stack.up.waitForStderr(/the database answers again/, 15_000);
    const log = stack.up.stderr().slice(logBefore);
    const said = log.split("the database cannot be reached").length - 1;
    const back = log.split("the database answers again").length - 1;
    console.log(
      `faults: embedded PostgreSQL SIGKILLed under 5 busy agents: answers ${[...busy.codes].map(([c, n]) => `${c} ${n}`).join(", ")}; ` +
        `calls accepted again ${(backMs / 1000).toFixed(1)} s after the kill; ${busy.acceptedResults.length} results accepted, ${notStored.length} lost; log: ${said} line when it went, ${back} when it came back`,
    );
    assert.equal(
      [...busy.codes.keys()].filter((c) => c !== "ok" && c !== "Unavailable"),
      [],
      "every call was answered ok or Unavailable",
    );
    assert.equal(behind, [], "every accepted heartbeat is stored");
    assert.equal(notStored, [], "every accepted result is stored");
    assert.ok(said <= 1 && back === said, `the outage is logged once and its end once (${said}, ${back})`);
    assert.is(log.split("the embedded PostgreSQL exited unexpectedly").length - 1, 1, "the restart is logged once");
  } catch (err) {
    // uvu cannot print a ConnectError: say it in plain words.
    throw err instanceof Error && err.name === "ConnectError" ? new Error(`${err.message}\n${err.stack}`) : err;
  } finally {
    await stack.stop();
  }
});

test.run();
