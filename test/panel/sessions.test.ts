import { connect } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AuthService } from "../../gen/myosicam/panel/v1/auth_pb.js";
import { Role } from "../../gen/myosicam/panel/v1/common_pb.js";
import { OperatorService } from "../../gen/myosicam/panel/v1/operator_pb.js";
import { ServerService } from "../../gen/myosicam/panel/v1/server_pb.js";
import { securityHeaders } from "../../services/lib/server.js";
import { codeOf, ownerApi, operatorSession, sessionApi } from "../helpers/operator-api.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("operator sessions: sign-in, cookies, expiry, revocation, the failed-login limit and CSRF");

let panel: PanelHost;
test.before(async () => {
  panel = await startPanelHost("sessions");
});
test.after(() => panel.stop());

/** A raw HTTP/2 POST, as a browser or a forged page would send it. */
function post(path: string, headers: Record<string, string>, body: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const session = connect(panel.url, { ca: panel.ca });
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": path, ...headers });
    let text = "";
    let head: Record<string, unknown> = {};
    req.on("response", (h) => (head = h));
    req.on("data", (c: Buffer) => (text += c.toString()));
    req.on("end", () => {
      session.close();
      resolve({ status: Number(head[":status"]), headers: head, body: text });
    });
    req.on("error", reject);
    req.end(body);
  });
}

test("a sign-in sets an HttpOnly, Secure, SameSite=Strict host-only cookie; the session works, and logout ends it", async () => {
  const alice = await operatorSession(panel, "alice@example.com", Role.OPERATOR);
  const cookie = alice.cookie()!;
  assert.match(cookie, /^__Host-myosicam_session=[0-9a-f]{64}$/);
  const raw = await post(
    "/myosicam.panel.v1.AuthService/Login",
    { "content-type": "application/json", "connect-protocol-version": "1", origin: panel.url },
    JSON.stringify({ email: "alice@example.com", password: alice.password }),
  );
  assert.is(raw.status, 200, raw.body);
  assert.match(String(raw.headers["set-cookie"]), /^__Host-myosicam_session=[0-9a-f]{64}; Path=\/; Secure; HttpOnly; SameSite=Strict; Max-Age=604800$/);
  for (const name of Object.keys(securityHeaders)) assert.ok(raw.headers[name], `security header ${name}`);
  assert.not.ok(raw.body.includes(cookie.split("=")[1]!), "the token is only in the cookie, never the body");

  const me = await alice.client(AuthService).whoAmI({});
  assert.is(me.name, "alice@example.com");
  assert.is(me.role, Role.OPERATOR);
  assert.ok(me.sessionIdleExpiresAt && me.sessionExpiresAt);
  assert.is((await alice.client(ServerService).listServers({})).total, 0);
  // The database holds only the token's hash.
  const rows = await panel.db("operator_sessions").select("token_hash");
  assert.ok(rows.every((r) => r.token_hash !== cookie.split("=")[1]));

  await alice.client(AuthService).logout({});
  assert.is(alice.cookie(), undefined, "logout clears the cookie");
  alice.setCookie(cookie);
  assert.is(await codeOf(() => alice.client(AuthService).whoAmI({})), "Unauthenticated");
});

test("without a session every operator call is Unauthenticated, and says how to sign in", async () => {
  const anonymous = sessionApi(panel);
  try {
    await anonymous.client(ServerService).listServers({});
    assert.unreachable();
  } catch (err) {
    const e = ConnectError.from(err);
    assert.is(e.code, Code.Unauthenticated);
    assert.match(e.rawMessage, /sign in first \(AuthService\.Login\)/);
  }
});

test("the first sign-in with a one-time password can do nothing but change it", async () => {
  const owner = await ownerApi(panel);
  const created = await owner.client(OperatorService).createOperator({ email: "bob@example.com", role: Role.ADMIN });
  assert.ok(created.oneTimePassword.length >= 16);
  const bob = sessionApi(panel);
  const auth = bob.client(AuthService);
  const login = await auth.login({ email: "bob@example.com", password: created.oneTimePassword });
  assert.ok(login.identity!.mustChangePassword);
  assert.is(await codeOf(() => bob.client(ServerService).listServers({})), "FailedPrecondition");
  assert.is(await codeOf(() => auth.changePassword({ currentPassword: "wrong", newPassword: "a-new-password-1" })), "PermissionDenied");
  assert.is(await codeOf(() => auth.changePassword({ currentPassword: created.oneTimePassword, newPassword: "short" })), "InvalidArgument");
  await auth.changePassword({ currentPassword: created.oneTimePassword, newPassword: "a-new-password-1" });
  assert.not.ok((await auth.whoAmI({})).mustChangePassword);
  assert.is(await codeOf(() => bob.client(ServerService).listServers({})), "ok");
});

test("a session ends after 12 hours unused and after 7 days whatever its use", async () => {
  const carol = await operatorSession(panel, "carol@example.com", Role.VIEWER);
  const auth = carol.client(AuthService);
  const [session] = (await auth.listSessions({})).sessions;
  await panel
    .db("operator_sessions")
    .where({ id: session!.id })
    .update({ last_seen_at: panel.db.raw("now() - interval '12 hours 1 minute'") });
  assert.is(await codeOf(() => auth.whoAmI({})), "Unauthenticated");

  await auth.login({ email: "carol@example.com", password: carol.password });
  assert.is(await codeOf(() => auth.whoAmI({})), "ok");
  await panel
    .db("operator_sessions")
    .where({ operator_id: carol.id })
    .update({ expires_at: panel.db.raw("now() - interval '1 second'") });
  assert.is(await codeOf(() => auth.whoAmI({})), "Unauthenticated");
});

test("sessions are listed and revocable by their owner, and by admins for anyone; others' sessions are NotFound", async () => {
  const dave = await operatorSession(panel, "dave@example.com", Role.OPERATOR);
  const eve = await operatorSession(panel, "eve@example.com", Role.OPERATOR);
  const admin = await operatorSession(panel, "admin@example.com", Role.ADMIN);
  const second = sessionApi(panel);
  await second.client(AuthService).login({ email: "dave@example.com", password: dave.password });
  const mine = (await dave.client(AuthService).listSessions({})).sessions;
  assert.is(mine.length, 2);
  assert.is(mine.filter((s) => s.current).length, 1);
  const other = mine.find((s) => !s.current)!;

  assert.is(await codeOf(() => eve.client(AuthService).listSessions({ operatorId: dave.id })), "PermissionDenied");
  assert.is(await codeOf(() => eve.client(AuthService).revokeSession({ sessionId: other.id })), "NotFound");
  await dave.client(AuthService).revokeSession({ sessionId: other.id });
  assert.is(await codeOf(() => second.client(AuthService).whoAmI({})), "Unauthenticated");

  const [current] = (await admin.client(AuthService).listSessions({ operatorId: dave.id })).sessions;
  await admin.client(AuthService).revokeSession({ sessionId: current!.id });
  assert.is(await codeOf(() => dave.client(AuthService).whoAmI({})), "Unauthenticated");
});

test("changing the password ends the operator's other sessions; disabling an operator ends all of them", async () => {
  const frank = await operatorSession(panel, "frank@example.com", Role.OPERATOR);
  const elsewhere = sessionApi(panel);
  await elsewhere.client(AuthService).login({ email: "frank@example.com", password: frank.password });
  await frank.client(AuthService).changePassword({ currentPassword: frank.password, newPassword: "frank-new-password" });
  assert.is(await codeOf(() => elsewhere.client(AuthService).whoAmI({})), "Unauthenticated");
  assert.is(await codeOf(() => frank.client(AuthService).whoAmI({})), "ok");
  const owner = await ownerApi(panel);
  await owner.client(OperatorService).setOperatorDisabled({ operatorId: frank.id, disabled: true });
  assert.is(await codeOf(() => frank.client(AuthService).whoAmI({})), "Unauthenticated");
  assert.is(await codeOf(() => sessionApi(panel).client(AuthService).login({ email: "frank@example.com", password: "frank-new-password" })), "Unauthenticated");
});

test("five failed sign-ins in a minute for one e-mail answer ResourceExhausted, even with the right password", async () => {
  const gina = await operatorSession(panel, "gina@example.com", Role.VIEWER);
  // Earlier tests' failures from this address count too: start from none.
  await panel.db("operator_login_failures").delete();
  const auth = sessionApi(panel).client(AuthService);
  for (let i = 0; i < 5; i++) assert.is(await codeOf(() => auth.login({ email: "gina@example.com", password: "wrong" })), "Unauthenticated");
  try {
    await auth.login({ email: "gina@example.com", password: gina.password });
    assert.unreachable();
  } catch (err) {
    assert.is(ConnectError.from(err).code, Code.ResourceExhausted);
    assert.match(ConnectError.from(err).rawMessage, /wait a minute/);
  }
});

test("five failed sign-ins in a minute from one address answer ResourceExhausted for any e-mail", async () => {
  await panel.db("operator_login_failures").delete();
  const auth = sessionApi(panel).client(AuthService);
  for (let i = 0; i < 5; i++) await codeOf(() => auth.login({ email: `guess${i}@example.com`, password: "wrong" }));
  assert.is(await codeOf(() => auth.login({ email: "owner@localhost", password: "anything" })), "ResourceExhausted");
  await panel.db("operator_login_failures").delete();
});

test("an unknown e-mail is refused like a wrong password, and is checked against a password hash all the same", async () => {
  await panel.db("operator_login_failures").delete();
  const auth = sessionApi(panel).client(AuthService);
  const unknown = await codeOf(() => auth.login({ email: "nobody@example.com", password: "whatever-password" }));
  const wrong = await codeOf(() => auth.login({ email: "owner@localhost", password: "whatever-password" }));
  assert.is(unknown, "Unauthenticated");
  assert.is(wrong, unknown);
  // Both count toward the limit: an attacker cannot tell them apart by that either.
  const failures = await panel.db("operator_login_failures").where("subject", "in", ["email:nobody@example.com", "email:owner@localhost"]).count("* as n");
  assert.is(Number(failures[0]!.n), 2);
});

test("CSRF: a cross-origin form post with the session cookie is refused, and so is a change without Connect-Protocol-Version", async () => {
  const hana = await operatorSession(panel, "hana@example.com", Role.ADMIN);
  const cookie = hana.cookie()!;
  // What a foreign page's <form method=post> sends: its own Origin, a form body, no custom header.
  const form = await post(
    "/myosicam.panel.v1.OperatorService/CreateOperator",
    { "content-type": "application/x-www-form-urlencoded", cookie, origin: "https://evil.example" },
    "email=mallory%40evil.example&role=4",
  );
  assert.ok(form.status >= 400, `refused: ${form.status} ${form.body}`);
  // The same as a script on another origin would send it (JSON, but no preflight-approved header).
  const script = await post(
    "/myosicam.panel.v1.OperatorService/CreateOperator",
    { "content-type": "application/json", cookie, origin: "https://evil.example" },
    JSON.stringify({ email: "mallory@evil.example", role: "ROLE_OWNER" }),
  );
  assert.is(script.status, 403, script.body);
  assert.match(script.body, /permission_denied/);
  // Even with the header, another origin is refused.
  const withHeader = await post(
    "/myosicam.panel.v1.OperatorService/CreateOperator",
    { "content-type": "application/json", "connect-protocol-version": "1", cookie, origin: "https://evil.example" },
    JSON.stringify({ email: "mallory@evil.example", role: "ROLE_OWNER" }),
  );
  assert.is(withHeader.status, 403);
  assert.match(withHeader.body, /cross-site request refused/);
  assert.is(await panel.db("operators").where({ email: "mallory@evil.example" }).first(), undefined, "no operator was created");
  // The panel's own page (same origin, Connect) may.
  const own = await post(
    "/myosicam.panel.v1.OperatorService/CreateOperator",
    { "content-type": "application/json", "connect-protocol-version": "1", cookie, origin: panel.url },
    JSON.stringify({ email: "ivan@example.com", role: "ROLE_VIEWER" }),
  );
  assert.is(own.status, 200, own.body);
});

test("no log line holds a password, a session token or a cookie", async () => {
  const logs = panel.logs.text();
  // The passwords this file chose (the generated ones end in "-chosen", see operatorSession).
  const secrets = ["a-new-password-1", "frank-new-password", "-chosen"];
  const tokens = [...logs.matchAll(/__Host-myosicam_session=([0-9a-f]{64})/g)];
  assert.is(tokens.length, 0, "no cookie value in the logs");
  for (const secret of secrets) assert.not.ok(logs.includes(secret), "a password in the logs");
  assert.ok(logs.includes('"rpc":"Login"'), "the logs were captured");
});

test.run();
