import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { SMTPServer } from "smtp-server";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentHealth } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { livenessJobs, livenessQueue, scanLiveness } from "../../services/agents/alerts.js";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { approveServer, markUnreachable, writeHeartbeats } from "../../services/agents/store.js";
import { writeMailSettings } from "../../services/lib/email/settings.js";
import { createLogger } from "../../services/lib/log.js";
import { createKeyring } from "../../services/lib/secrets/keyring.js";
import { newKey } from "../helpers/keys.js";
import { eventually } from "../helpers/eventually.js";
import { unblocked } from "../helpers/unblocked.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("liveness: unreachable and recovery alerts, e-mail through a real SMTP server, approval mode");

let panel: PanelHost;
/** When the panel started: it judges silence only once it has listened for the threshold (2 s here). */
let panelStartedAt = 0;
let smtp: SMTPServer;
const mails: Array<{ from: string; to: string[]; body: string; user?: string }> = [];
const arrived: Array<() => void> = [];
const heartbeat = { uptimeSeconds: 5n, health: AgentHealth.OK, agentVersion: "0.1.0" };
const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e: unknown) => Code[ConnectError.from(e).code],
  );
/** Resolves once `count` mails arrived (that mention `about`, when given); fails after 60 s instead of hanging. */
const waitForMail = (count: number, about?: string) =>
  unblocked(
    new Promise<void>((resolve) => {
      const check = () => (mails.filter((m) => about === undefined || m.body.includes(about)).length >= count ? resolve() : arrived.push(check));
      check();
    }),
    `${count} mail(s)${about ? ` about "${about}"` : ""}`,
    60_000,
  );

async function enroll(server: string) {
  const { token } = await createInstallToken(panel.db, { server, createdBy: "test" });
  return panel.registration().register({
    installToken: token,
    agentId: randomUUID(),
    hostname: server,
    ip: "192.0.2.1",
    os: "linux",
    osVersion: "",
    arch: "x64",
    agentVersion: "0.1.0",
  });
}

test.before(async () => {
  smtp = new SMTPServer({
    disabledCommands: ["STARTTLS"],
    authOptional: false,
    allowInsecureAuth: true,
    onAuth(auth, _session, callback) {
      if (auth.username === "alerts" && auth.password === "smtp-secret-1") callback(null, { user: auth.username });
      else callback(new Error("invalid credentials"));
    },
    onData(stream, session, callback) {
      let body = "";
      stream.on("data", (c: Buffer) => (body += c.toString()));
      stream.on("end", () => {
        mails.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          to: session.envelope.rcptTo.map((r) => r.address),
          body,
          user: session.user,
        });
        for (const waiter of arrived.splice(0)) waiter();
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => smtp.listen(0, "127.0.0.1", resolve));
  const smtpPort = (smtp.server.address() as { port: number }).port;
  panelStartedAt = Date.now();
  panel = await startPanelHost("agents_liveness", { AGENT_HEARTBEAT_INTERVAL_SECONDS: "1", AGENT_MISSED_HEARTBEATS: "2", REQUIRE_AGENT_APPROVAL: "true" });
  await panel.setLicense(10);
  const keyring = createKeyring(newKey);
  await writeMailSettings(
    panel.db,
    {
      provider: "smtp",
      from: "panel@example.com",
      recipients: ["ops@example.com"],
      smtp: { host: "127.0.0.1", port: smtpPort, secure: false, username: "alerts", password: "smtp-secret-1" },
    },
    async (plaintext, column, rowId) => keyring.seal(Buffer.from(plaintext), { table: "email_settings", column, rowId }),
    randomUUID(),
  );
});
test.after(async () => {
  await panel.stop();
  await new Promise<void>((resolve) => smtp.close(() => resolve()));
});

test("a pending agent may heartbeat but nothing else until it is approved", async () => {
  const res = await enroll("pending-1");
  assert.ok(res.pendingApproval);
  const agent = panel.agent(res.serverId, res.agentToken);
  const beat = await agent.heartbeat(heartbeat);
  assert.not.ok(beat.approved);
  assert.is(await codeOf(agent.sync({})), "Unauthenticated", "pending: sync refused");
  assert.is((await panel.db("hmac_refusals").where({ caller_id: res.serverId }).first()).reason, "forbidden_method");
  await approveServer(panel.db, res.serverId);
  assert.ok((await agent.heartbeat(heartbeat)).approved);
  assert.is(await codeOf(agent.sync({})), "ok", "approved: sync is accepted");
});

test("a silent server becomes unreachable with exactly one alert and one e-mail; its next heartbeat raises one recovery", async () => {
  const res = await enroll("quiet-1");
  await approveServer(panel.db, res.serverId);
  const agent = panel.agent(res.serverId, res.agentToken);
  await agent.heartbeat(heartbeat);
  await panel
    .db("servers")
    .where({ id: res.serverId })
    .update({ last_seen_at: panel.db.raw("now() - interval '10 seconds'") });

  await new Promise((r) => setTimeout(r, Math.max(0, panelStartedAt + 2_000 - Date.now())));
  // The other servers of this file heartbeat "now": quiet-1 is the only silent one.
  await panel
    .db("servers")
    .whereNot({ id: res.serverId })
    .update({ last_seen_at: panel.db.raw("now()") });
  await panel.host.enqueueJob("panel", livenessQueue);
  await waitForMail(1, "quiet-1");
  // Scanning again (any replica, any number of times) raises nothing new.
  assert.is(await scanLiveness(panel.db, panel.host.enqueueJob.bind(null, "panel"), 1, 2), 0);
  const server = await panel.db("servers").where({ id: res.serverId }).first();
  assert.is(server.status, "unreachable");
  const alerts = await panel.db("alerts").where({ server_id: res.serverId }).orderBy("id");
  assert.equal(
    alerts.map((a) => a.kind),
    ["server_unreachable"],
  );
  const quiet = () => mails.filter((m) => m.body.includes("quiet-1"));
  assert.is(quiet().length, 1);
  assert.equal(quiet()[0]!.to, ["ops@example.com"]);
  assert.is(quiet()[0]!.user, "alerts", "authenticated with the stored (sealed) SMTP password");
  assert.match(quiet()[0]!.body, /server quiet-1 is unreachable/);

  await agent.heartbeat(heartbeat);
  await agent.heartbeat(heartbeat);
  await waitForMail(2, "quiet-1");
  assert.is((await panel.db("servers").where({ id: res.serverId }).first()).status, "online");
  assert.equal(
    (await panel.db("alerts").where({ server_id: res.serverId }).orderBy("id")).map((a) => a.kind),
    ["server_unreachable", "server_recovered"],
  );
  assert.match(quiet()[1]!.body, /server quiet-1 is reachable again/);
  // The SMTP server has both messages; the job records the delivery right after the send returns.
  const emailed = async () => Number((await panel.db("alerts").where({ server_id: res.serverId }).whereNotNull("emailed_at").count({ n: "*" }))[0]!.n);
  const deadline = Date.now() + 10_000;
  while ((await emailed()) < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.is(await emailed(), 2, "both alerts are marked e-mailed");
});

test("servers going quiet in the same scan are one e-mail listing them (the first 100, and how many more), not one each", async () => {
  // The panel's own network failed: 120 servers were last heard from at the same time.
  await panel.db.raw(
    `insert into servers (id, name, status, approved, created_by, last_seen_at)
     select gen_random_uuid(), 'herd-' || lpad(n::text, 3, '0'), 'online', true, 'test', now() - interval '10 minutes' from generate_series(1, 120) as n`,
  );
  // Removed at the end: they count against this file's license of 10 servers.
  try {
    await panel
      .db("servers")
      .whereNot("name", "like", "herd-%")
      .update({ last_seen_at: panel.db.raw("now()") });
    const before = mails.length;
    assert.is(await scanLiveness(panel.db, panel.host.enqueueJob.bind(null, "panel"), 1, 2), 120);
    await waitForMail(1, "120 servers are unreachable");
    // The raw message: quoted-printable, its long lines broken with "=" at the end.
    const digest = mails.find((m) => m.body.includes("120 servers are unreachable"))!.body.replace(/=\r?\n/g, "");
    assert.match(digest, /Subject: \[MyOsicam\] 120 servers are unreachable/);
    assert.match(digest, /server herd-001 is unreachable/);
    assert.match(digest, /server herd-100 is unreachable/);
    assert.not.match(digest, /server herd-101 is unreachable/, "the rest are in the console");
    assert.match(digest, /and 20 more: the console's Alerts page lists every one/);
    // Every one of them is marked e-mailed by that one message (the job marks them right after the send).
    await eventually(
      async () =>
        Number(
          (
            await panel
              .db("alerts as a")
              .join("servers as s", "s.id", "a.server_id")
              .where("s.name", "like", "herd-%")
              .whereNull("a.emailed_at")
              .count({ n: "*" })
          )[0]!.n,
        ),
      (unsent) => unsent === 0,
      "every alert of the digest marked e-mailed",
    );
    assert.is(mails.slice(before).filter((m) => m.body.includes("herd-")).length, 1, "one message");
  } finally {
    await panel.db("servers").where("name", "like", "herd-%").delete();
  }
});

test("after the panel itself was down, it judges no server silent until it has listened for the whole threshold", async () => {
  const res = await enroll("deaf-panel-1");
  await approveServer(panel.db, res.serverId);
  await panel.agent(res.serverId, res.agentToken).heartbeat(heartbeat);
  // The panel was down for 10 minutes: this agent's last heartbeat is that old.
  await panel
    .db("servers")
    .where({ id: res.serverId })
    .update({ last_seen_at: panel.db.raw("now() - interval '10 minutes'") });
  let clock = Date.now();
  const [scan] = livenessJobs({
    db: panel.db,
    enqueue: panel.host.enqueueJob.bind(null, "panel"),
    open: async () => "",
    intervalSeconds: 60,
    missed: 3,
    now: () => clock,
  });
  const outputs: string[] = [];
  const ctx = {
    id: "t",
    data: null,
    signal: new AbortController().signal,
    log: createLogger({ level: "silent" }),
    progress: async () => {},
    output: async (l: string) => void outputs.push(l),
  };
  clock += 179_000;
  await scan!.run(ctx);
  assert.is((await panel.db("servers").where({ id: res.serverId }).first()).status, "online", "not judged 179 s after the start");
  assert.match(outputs.at(-1)!, /has listened for 179 s, less than the 180 s of silence/);
  clock += 1_000;
  await scan!.run(ctx);
  assert.is(
    (await panel.db("servers").where({ id: res.serverId }).first()).status,
    "unreachable",
    "judged once it has listened 180 s (the agent never came back)",
  );
});

test("silence while a panel process refused calls for load does not count, once however many replicas refused together", async () => {
  // Three servers quiet for 10, 20 and 13 minutes; the other servers of this file heartbeat "now".
  const quiet = new Map<string, string>();
  for (const [name, minutes] of [
    ["busy-quiet-10", 10],
    ["busy-quiet-20", 20],
    ["busy-quiet-13", 13],
  ] as const) {
    const res = await enroll(name);
    await approveServer(panel.db, res.serverId);
    await panel
      .db("servers")
      .where({ id: res.serverId })
      .update({ last_seen_at: panel.db.raw("now() - make_interval(mins => ?)", [minutes]) });
    quiet.set(name, res.serverId);
  }
  await panel
    .db("servers")
    .whereNotIn("id", [...quiet.values()])
    .update({ last_seen_at: panel.db.raw("now()") });
  // One replica refused calls from 9 minutes ago until 2 minutes ago, the other for a while in the
  // middle of that.
  const spell = (startedMinutesAgo: number, lastMinutesAgo: number) => ({
    id: randomUUID(),
    started_at: panel.db.raw("now() - make_interval(mins => ?)", [startedMinutesAgo]),
    last_refused_at: panel.db.raw("now() - make_interval(mins => ?)", [lastMinutesAgo]),
    refused: 1000,
    over: true,
  });
  await panel.db("panel_busy_spells").insert([spell(9, 2), spell(7, 5)]);
  try {
    // With a 60 s interval a spell's deafness lasts until 65 s after its last refusal: 485 s, from
    // 9 minutes ago to 55 s ago. 600 s - 485 s is under the 180 s threshold, 780 s - 485 s is not;
    // with the overlap counted twice (670 s), the third server would stay online too.
    assert.is(await scanLiveness(panel.db, panel.host.enqueueJob.bind(null, "panel"), 60, 3), 2);
    const statuses = Object.fromEntries(
      (
        await panel
          .db("servers")
          .whereIn("id", [...quiet.values()])
          .select("name", "status")
      ).map((r: { name: string; status: string }) => [r.name, r.status]),
    );
    assert.equal(statuses, { "busy-quiet-10": "online", "busy-quiet-20": "unreachable", "busy-quiet-13": "unreachable" });
    // Without the spells, the first one is silent too.
    await panel.db("panel_busy_spells").delete();
    assert.is(await scanLiveness(panel.db, panel.host.enqueueJob.bind(null, "panel"), 60, 3), 1);
  } finally {
    await panel.db("panel_busy_spells").delete();
  }
});

test("the liveness scan does not wait for a server whose row is locked (its heartbeat being written): it marks the others and leaves that one to the next scan", async () => {
  const quiet = await enroll("locked-quiet-1");
  const writing = await enroll("locked-quiet-2");
  for (const res of [quiet, writing]) {
    await approveServer(panel.db, res.serverId);
    await panel.agent(res.serverId, res.agentToken).heartbeat(heartbeat);
  }
  await panel
    .db("servers")
    .whereIn("id", [quiet.serverId, writing.serverId])
    .update({ last_seen_at: panel.db.raw("now() - interval '10 minutes'") });
  // A heartbeat batch holds the second server's row (as writeHeartbeats does) while the scan runs.
  let release!: () => void;
  let locked!: () => void;
  const rowLocked = new Promise<void>((resolve) => (locked = resolve));
  const held = panel.db.transaction(async (trx) => {
    await trx("servers").where({ id: writing.serverId }).forNoKeyUpdate();
    locked();
    await new Promise<void>((resolve) => (release = resolve));
  });
  try {
    await rowLocked;
    const marked = await unblocked(markUnreachable(panel.db, 180), "the locked row");
    assert.ok(
      marked.some((s) => s.id === quiet.serverId),
      "the quiet server is marked",
    );
    assert.not.ok(
      marked.some((s) => s.id === writing.serverId),
      "the locked one is skipped, not waited for",
    );
  } finally {
    release();
    await held;
  }
  assert.equal(
    (await markUnreachable(panel.db, 180)).map((s) => s.id),
    [writing.serverId],
    "the next scan marks it",
  );
});

test("a heartbeat rewrites its server's row in place: no index of the servers gets an entry for it (a HOT update)", async () => {
  const res = await enroll("in-place-1");
  await approveServer(panel.db, res.serverId);
  // This backend's counters, read before and after within one transaction (they also hold earlier
  // transactions' counts until they are flushed, which never happens inside a transaction).
  const counters = async (trx: typeof panel.db) => {
    const { rows } = await trx.raw("select n_tup_upd as updated, n_tup_hot_upd as hot from pg_stat_xact_user_tables where relname = 'servers'");
    return { updated: Number(rows[0].updated), hot: Number(rows[0].hot) };
  };
  const beat = (i: number) => ({
    serverId: res.serverId,
    at: new Date(Date.now() + i * 1000),
    uptimeSeconds: 100 + i,
    health: "ok",
    agentVersion: "0.1.0",
    load: [0.5, 0.4, 0.3],
    instances: [],
  });
  // The first may move the row to a page with room (enrolment filled its page).
  await writeHeartbeats(panel.db, [beat(0)]);
  const { before, after } = await panel.db.transaction(async (trx) => {
    const before = await counters(trx);
    for (let i = 1; i <= 10; i++) await writeHeartbeats(trx, [beat(i)]);
    return { before, after: await counters(trx) };
  });
  assert.is(after.updated - before.updated, 10);
  assert.is(after.hot - before.hot, 10, "every heartbeat's update was heap-only");
  const row = await panel.db("servers").where({ id: res.serverId }).first("uptime_seconds", "last_seen_at");
  assert.is(Number(row.uptime_seconds), 110, "the last heartbeat is what the row holds");
});

test("the SMTP password is stored sealed and never logged", async () => {
  const row = await panel.db("email_settings").first();
  assert.match(row.smtp_password, /^enc:v1:/);
  assert.not.ok(panel.logs.text().includes("smtp-secret-1"));
});

// Last in this file: it leaves 127.0.0.1 rate-limited for a minute.
test("after 10 failed registrations in a minute from one address, further attempts are refused without a look at the token", async () => {
  const attempt = (token: string) =>
    codeOf(
      panel.registration().register({
        installToken: token,
        agentId: randomUUID(),
        hostname: "x",
        ip: "192.0.2.1",
        os: "linux",
        osVersion: "",
        arch: "x64",
        agentVersion: "0.1.0",
      }),
    );
  for (let i = 0; i < 10; i++) assert.is(await attempt(i.toString(16).padStart(64, "0")), "Unauthenticated");
  const { token } = await createInstallToken(panel.db, { server: "late", createdBy: "test" });
  assert.is(await attempt(token), "ResourceExhausted", "even a valid token waits");
  const state = await panel.db("install_tokens").whereNull("consumed_at").count({ n: "*" });
  assert.ok(Number(state[0]!.n) >= 1, "the valid token was not consumed");
});

test.run();
