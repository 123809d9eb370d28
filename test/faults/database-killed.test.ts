import { createClient } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentHealth, CommandOutcome } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { createCommands } from "../../services/agents/commands.js";
import { eventually } from "../helpers/eventually.js";
import { getHttp2 } from "../helpers/https.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";
import { startTcpRelay, type TcpRelay } from "../helpers/tcp-relay.js";

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
  const postgresPort = Number(new URL(process.env.MYOSICAM_TEST_POSTGRES_URL!).port);
  relay = await startTcpRelay(postgresPort);
  panel = await startPanelHost(
    "database_killed",
    {},
    {
      databaseUrl: (url) => {
        const viaRelay = new URL(url);
        viaRelay.port = String(relay.port);
        return viaRelay.toString();
      },
    },
  );
  await panel.setLicense(50, 50);
});
test.after(async () => {
  await panel?.stop();
  await relay?.stop();
});

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
  const okBefore = codes.get("ok") ?? 0;
  await eventually(
    async () => codes.get("ok") ?? 0,
    (n) => n > okBefore + agentCount,
    "calls to be accepted again",
  );
  const recoveredMs = performance.now() - upAt;
  running = false;
  await Promise.all(loops);

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

test.run();
