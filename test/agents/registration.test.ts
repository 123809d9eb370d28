import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentHealth } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { createInstallToken, listInstallTokens } from "../../services/agents/install-tokens.js";
import { maxRegistrationsUnderWay, serverQuotaLock } from "../../services/agents/service.js";
import { eventually } from "../helpers/eventually.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("install tokens and registration against a real panel");

let panel: PanelHost;
const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e: unknown) => Code[ConnectError.from(e).code],
  );
const request = (installToken: string) => ({
  installToken,
  agentId: randomUUID(),
  hostname: "oscam-01",
  ip: "192.0.2.10",
  os: "linux",
  osVersion: "Debian GNU/Linux 12 (bookworm)",
  arch: "x64",
  agentVersion: "0.1.0",
});
const heartbeat = { uptimeSeconds: 5n, health: AgentHealth.OK, agentVersion: "0.1.0" };
const issue = async (server: string) => (await createInstallToken(panel.db, { server, createdBy: "test" })).token;

test.before(async () => {
  panel = await startPanelHost("agents_registration", { REGISTRATION_FAILURES_PER_MINUTE: "1000" });
  await panel.setLicense(50);
});
test.after(async () => {
  await panel.stop();
});

test("a token registers once: server id, agent token, interval; only the token's hash is stored", async () => {
  const token = await issue("alpha");
  const res = await panel.registration().register(request(token));
  assert.match(res.agentToken, /^[0-9a-f]{64}$/);
  assert.is(res.heartbeatIntervalSeconds, 60);
  assert.not.ok(res.pendingApproval);
  const row = await panel.db("servers").where({ id: res.serverId }).first();
  assert.is(row.name, "alpha");
  assert.is(row.status, "online");
  assert.is(row.hostname, "oscam-01");
  assert.is(row.reported_ip, "192.0.2.10");
  assert.is(row.seen_ip, "127.0.0.1");
  assert.match(row.agent_token, /^enc:v1:/, "the agent token is a crypto envelope");
  const stored = JSON.stringify(await panel.db("install_tokens").select("*"));
  assert.not.ok(stored.includes(token), "the install token itself is not stored");
  assert.not.ok(panel.logs.text().includes(token) || panel.logs.text().includes(res.agentToken), "neither token is logged");

  const second = await panel
    .registration()
    .register(request(token))
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((second as ConnectError).code, Code.Unauthenticated, "second use of a token is refused");
  const [attempt] = await panel.db("registration_attempts").where({ outcome: "refused" }).orderBy("id", "desc").limit(1);
  assert.is(attempt.reason, "consumed");
  assert.is(attempt.ip, "127.0.0.1");
});

test("an expired token, an unknown token and a revoked token are refused, each audited with its reason", async () => {
  const expired = await issue("beta");
  await panel
    .db("install_tokens")
    .update({ expires_at: panel.db.raw("now() - interval '1 second'") })
    .whereRaw("expires_at > now()");
  assert.is(await codeOf(panel.registration().register(request(expired))), "Unauthenticated");
  assert.is(await codeOf(panel.registration().register(request("f".repeat(64)))), "Unauthenticated");
  const reasons = (await panel.db("registration_attempts").orderBy("id", "desc").limit(2)).map((a) => a.reason);
  assert.equal(reasons, ["unknown_token", "expired"]);
  assert.equal((await listInstallTokens(panel.db)).find((t) => t.server === "beta")?.state, "expired");
});

test("a malformed registration is refused as InvalidArgument and audited as malformed", async () => {
  const err = await panel
    .registration()
    .register({ ...request("not-hex"), hostname: "" })
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((err as ConnectError).code, Code.InvalidArgument);
  const [attempt] = await panel.db("registration_attempts").orderBy("id", "desc").limit(1);
  assert.equal([attempt.outcome, attempt.reason, attempt.ip], ["refused", "malformed", "127.0.0.1"]);
});

test("100 concurrent registrations with one token: exactly one succeeds", async () => {
  const token = await issue("gamma");
  const outcomes = await Promise.all(Array.from({ length: 100 }, () => codeOf(panel.registration().register(request(token)))));
  assert.is(outcomes.filter((o) => o === "ok").length, 1);
  assert.is(outcomes.filter((o) => o === "Unauthenticated").length, 99);
});

test("re-running the bootstrap rotates the agent token: the old one is refused from then on", async () => {
  const first = await panel.registration().register(request(await issue("delta")));
  assert.is(await codeOf(panel.agent(first.serverId, first.agentToken).heartbeat(heartbeat)), "ok");
  const second = await panel.registration().register(request(await issue("delta")));
  assert.is(second.serverId, first.serverId, "the same server record");
  assert.is(await codeOf(panel.agent(first.serverId, first.agentToken).heartbeat(heartbeat)), "Unauthenticated", "old token");
  assert.is(await codeOf(panel.agent(second.serverId, second.agentToken).heartbeat(heartbeat)), "ok", "new token");
  const refusal = await panel.db("hmac_refusals").where({ caller_id: first.serverId }).first();
  assert.is(refusal.reason, "bad_signature");
});

test("the license quota refuses a new server with ResourceExhausted naming it, and keeps the token usable", async () => {
  await panel.registration().register(request(await issue("epsilon-first")));
  const active = Number((await panel.db("servers").whereIn("status", ["online", "pending", "unreachable"]).count({ n: "*" }))[0]!.n);
  await panel.setLicense(active);
  const token = await issue("epsilon");
  const err = await panel
    .registration()
    .register(request(token))
    .catch((e: unknown) => ConnectError.from(e));
  assert.is((err as ConnectError).code, Code.ResourceExhausted);
  assert.match((err as ConnectError).rawMessage, new RegExp(`license quota reached: ${active} of ${active} servers in use`));
  assert.equal((await listInstallTokens(panel.db)).find((t) => t.server === "epsilon")?.state, "issued");
  await panel.setLicense(active + 1);
  assert.is(await codeOf(panel.registration().register(request(token))), "ok", "after an upgrade the same token works");
  await panel.setLicense(50);
});

test("20 new servers registering at once with room for 5: exactly 5 are added, the others refused with the quota and their tokens kept", async () => {
  const active = Number((await panel.db("servers").whereIn("status", ["online", "pending", "unreachable"]).count({ n: "*" }))[0]!.n);
  await panel.setLicense(active + 5);
  const tokens = await Promise.all(Array.from({ length: 20 }, (_, i) => issue(`zeta-${i}`)));
  const outcomes = await Promise.all(tokens.map((t) => codeOf(panel.registration().register(request(t)))));
  assert.is(outcomes.filter((o) => o === "ok").length, 5, outcomes.join(" "));
  assert.is(outcomes.filter((o) => o === "ResourceExhausted").length, 15, outcomes.join(" "));
  const after = Number((await panel.db("servers").whereIn("status", ["online", "pending", "unreachable"]).count({ n: "*" }))[0]!.n);
  assert.is(after, active + 5, "the quota holds");
  const issued = (await listInstallTokens(panel.db)).filter((t) => t.server.startsWith("zeta-") && t.state === "issued").length;
  assert.is(issued, 15, "a refused token stays usable");
  await panel.setLicense(50);
});

test("a token tried several times at once takes one place in the quota: with room for 5, ten tries of one token and ten of their own add exactly 5", async () => {
  const active = Number((await panel.db("servers").whereIn("status", ["online", "pending", "unreachable"]).count({ n: "*" }))[0]!.n);
  await panel.setLicense(active + 5);
  const shared = await issue("kappa-shared");
  const own = await Promise.all(Array.from({ length: 10 }, (_, i) => issue(`kappa-${i}`)));
  // Another replica holds the quota lock, so the tries gather and are counted together: those that
  // find the shared token used must leave their place to the next ones.
  const holder = await panel.db.transaction();
  let outcomes: Promise<string[]>;
  try {
    await holder.raw("select pg_advisory_xact_lock(hashtext(?))", [serverQuotaLock]);
    outcomes = Promise.all([...Array.from({ length: 10 }, () => shared), ...own].map((t) => codeOf(panel.registration().register(request(t)))));
    await eventually(
      async () =>
        Number((await panel.db.raw("select count(*) as n from pg_stat_activity where wait_event_type = 'Lock' and wait_event = 'advisory'")).rows[0].n),
      (n) => n >= 1,
      "a registration waiting for the quota lock",
    );
  } finally {
    await holder.commit();
  }
  assert.is((await outcomes).filter((o) => o === "ok").length, 5, (await outcomes).join(" "));
  const after = Number((await panel.db("servers").whereIn("status", ["online", "pending", "unreachable"]).count({ n: "*" }))[0]!.n);
  assert.is(after, active + 5, "the quota is used up, and holds");
  await panel.setLicense(50);
});

test("a registration whose answer was lost is answered again for the same agent id, until its token heartbeats, is rotated or 10 minutes pass", async () => {
  const token = await issue("theta");
  const first = request(token);
  const answered = await panel.registration().register(first);
  const again = await panel.registration().register(first);
  assert.equal([again.serverId, again.agentToken], [answered.serverId, answered.agentToken], "the same answer");
  assert.is(await codeOf(panel.registration().register(request(token))), "Unauthenticated", "another agent id is refused");
  const [audit] = await panel.db("registration_attempts").where({ reason: "answered_again" }).orderBy("id", "desc").limit(1);
  assert.equal([audit.outcome, audit.server_id], ["accepted", answered.serverId]);
  assert.not.ok(panel.logs.text().includes(answered.agentToken), "the answered-again token is not logged");

  // Ten minutes later the token is dead even for the same agent.
  await panel
    .db("install_tokens")
    .where({ server_id: answered.serverId })
    .update({ consumed_at: panel.db.raw("consumed_at - interval '601 seconds'") });
  await panel
    .db("servers")
    .where({ id: answered.serverId })
    .update({ registered_at: panel.db.raw("registered_at - interval '601 seconds'"), last_seen_at: panel.db.raw("last_seen_at - interval '601 seconds'") });
  assert.is(await codeOf(panel.registration().register(first)), "Unauthenticated", "past the window");

  // Once the agent has heartbeated with its token, the token is not answered again.
  const token2 = await issue("iota");
  const second = request(token2);
  const res = await panel.registration().register(second);
  assert.is(await codeOf(panel.agent(res.serverId, res.agentToken).heartbeat(heartbeat)), "ok");
  assert.is(await codeOf(panel.registration().register(second)), "Unauthenticated", "after a heartbeat");

  // A rotation by a newer token closes the older one's replay.
  const older = request(await issue("kappa"));
  await panel.registration().register(older);
  await panel.registration().register({ ...older, installToken: await issue("kappa") });
  assert.is(await codeOf(panel.registration().register(older)), "Unauthenticated", "after a rotation");
});

test("registrations waiting to count the quota hold one pool connection, not all: an enrolled agent's heartbeat is stored meanwhile", async () => {
  const enrolled = await panel.registration().register(request(await issue("theta")));
  const tokens = await Promise.all(Array.from({ length: 20 }, (_, i) => issue(`iota-${i}`)));
  const waitingForLock = async () =>
    Number((await panel.db.raw("select count(*) as n from pg_stat_activity where wait_event_type = 'Lock' and wait_event = 'advisory'")).rows[0].n);
  // Another replica counting the quota: the lock is taken, so every registration here must wait.
  const holder = await panel.db.transaction();
  let registering: Promise<string[]> | undefined;
  try {
    await holder.raw("select pg_advisory_xact_lock(hashtext(?))", [serverQuotaLock]);
    registering = Promise.all(tokens.map((t) => codeOf(panel.registration().register(request(t)))));
    await eventually(waitingForLock, (n) => n >= 1, "a registration waiting for the quota lock");
    assert.is(await codeOf(panel.agent(enrolled.serverId, enrolled.agentToken).heartbeat(heartbeat)), "ok", "the pool still serves other calls");
    assert.is(await waitingForLock(), 1, "one connection waits for the lock; the other registrations wait their turn in memory");
  } finally {
    await holder.commit();
  }
  const outcomes = await registering;
  assert.equal(
    outcomes,
    tokens.map(() => "ok"),
    "each registers once the lock is free",
  );
});

test("past the registrations that may be under way, one is refused at once with a retry hint, not audited as a failure; the others register", async () => {
  await panel.setLicense(1000);
  const tokens = await Promise.all(Array.from({ length: maxRegistrationsUnderWay + 20 }, (_, i) => issue(`mu-${i}`)));
  const failedBefore = Number((await panel.db("registration_attempts").where({ outcome: "refused" }).count({ n: "*" }))[0]!.n);
  const outcomes: Array<"ok" | ConnectError> = [];
  const holder = await panel.db.transaction();
  let all: Promise<unknown> | undefined;
  try {
    // Another replica counting the quota: every registration here stays under way meanwhile.
    await holder.raw("select pg_advisory_xact_lock(hashtext(?))", [serverQuotaLock]);
    all = Promise.all(
      tokens.map((t) =>
        panel
          .registration()
          .register(request(t))
          .then(
            () => outcomes.push("ok"),
            (err: unknown) => outcomes.push(ConnectError.from(err)),
          ),
      ),
    );
    const refused = await eventually(
      async () => outcomes.filter((o) => o !== "ok"),
      (r) => r.length >= 20,
      "the registrations past the limit refused",
    );
    assert.is(refused.length, 20);
    assert.ok(
      refused.every((e) => e.code === Code.Unavailable && e.metadata.get("retry-after") === "5"),
      refused.map((e) => e.message).join(" | "),
    );
    assert.match(refused[0]!.rawMessage, new RegExp(`^${maxRegistrationsUnderWay} registrations are under way; try again in 5 s$`));
  } finally {
    await holder.commit();
  }
  await all;
  assert.is(outcomes.filter((o) => o === "ok").length, maxRegistrationsUnderWay, "every registration under way went through");
  const failedAfter = Number((await panel.db("registration_attempts").where({ outcome: "refused" }).count({ n: "*" }))[0]!.n);
  assert.is(failedAfter, failedBefore, "a busy refusal is no failed attempt (the per-address rate limit does not count it)");
  // Room for the tests after this one.
  await panel.setLicense(1000);
});

test("a revoked agent is refused on its next heartbeat", async () => {
  const res = await panel.registration().register(request(await issue("zeta")));
  await panel.db("servers").where({ id: res.serverId }).update({ status: "revoked", agent_token: null });
  assert.is(await codeOf(panel.agent(res.serverId, res.agentToken).heartbeat(heartbeat)), "Unauthenticated");
});

test("heartbeats move last_seen_at, and a heartbeat returns only once it is stored", async () => {
  const res = await panel.registration().register(request(await issue("eta")));
  await panel
    .db("servers")
    .where({ id: res.serverId })
    .update({ last_seen_at: new Date("2026-01-01T00:00:00Z") });
  const before = Date.now();
  await panel.agent(res.serverId, res.agentToken).heartbeat({ ...heartbeat, load: { one: 0.5, five: 0.25, fifteen: 0.125 } });
  const row = await panel.db("servers").where({ id: res.serverId }).first();
  assert.ok(new Date(row.last_seen_at).getTime() >= before - 1000, "written before the answer");
  assert.equal(row.load_average, [0.5, 0.25, 0.125]);
  assert.is(row.health, "ok");
});

test("an agent's routine calls are logged at debug when they succeed; its registration, and refusals, at info and above", async () => {
  const res = await panel.registration().register(request(await issue("theta")), { headers: { "x-request-id": "log-level-register" } });
  const agent = panel.agent(res.serverId, res.agentToken);
  await agent.heartbeat(heartbeat, { headers: { "x-request-id": "log-level-heartbeat" } });
  await agent.heartbeat({ ...heartbeat, uptimeSeconds: 9_223_372_036_854_775_808n }, { headers: { "x-request-id": "log-level-refused" } }).catch(() => {});
  const finished = (requestId: string) => panel.logs.lines().find((l) => l.requestId === requestId && String(l.msg).startsWith("rpc "));
  assert.is(finished("log-level-heartbeat")?.level, 20, "a heartbeat: debug");
  assert.is(finished("log-level-register")?.level, 30, "a registration: info");
  assert.ok(Number(finished("log-level-refused")?.level) >= 40, "a refused heartbeat: warn or above");
});

test("registrations refused by the rate limit are recorded, counted on one row a minute", async () => {
  await panel.db("registration_attempts").insert(Array.from({ length: 1000 }, () => ({ ip: "127.0.0.1", outcome: "refused", reason: "unknown_token" })));
  for (let i = 0; i < 5; i++) assert.is(await codeOf(panel.registration().register(request("e".repeat(64)))), "ResourceExhausted");
  const rows = await panel.db("registration_attempts").where({ reason: "rate_limited" });
  assert.is(rows.length, 1);
  assert.is(rows[0].repeats, 4);
  await panel.db("registration_attempts").where({ reason: "unknown_token" }).delete();
});

test.run();
