import { stat, readFile } from "node:fs/promises";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AuthService } from "../../gen/myosicam/panel/v1/auth_pb.js";
import { cliWith, emptyConfigFile, makeTempDir, runCli, type CliProcess } from "../helpers/cli.js";
import { eventually } from "../helpers/eventually.js";
import { upTestSettings } from "../helpers/up-process.js";

const test = suite("first start: the owner's first login printed once, and a CLI that needs no sign-in on the panel host");

let dir: Awaited<ReturnType<typeof makeTempDir>>;
let configFile: string;
let up: CliProcess;
const env = () => ({ ...upTestSettings(dir.path, configFile), LOG_LEVEL: "warn" });
const cli = cliWith(() => ({ ...env(), MYOSICAM_CREDENTIALS: "" }));

/** Starts `up` (as `npm start` does) and waits for its banner. */
async function start(): Promise<{ url: string; fingerprint: string; banner: string }> {
  up = runCli(["up"], env());
  await eventually(
    async () => up.stdout(),
    (out) => /Stop with Ctrl\+C/.test(out),
    "the banner",
    60_000,
  );
  const banner = up.stdout();
  return { url: /panel\s+(https:\/\/\S+)/.exec(banner)![1]!, fingerprint: /SHA-256\s+(sha256:[0-9a-f]{64})/.exec(banner)![1]!, banner };
}

async function stop() {
  up.child.kill("SIGINT");
  assert.is(await up.exited, 0, up.stderr().slice(-1000));
}

test.before(async () => {
  dir = await makeTempDir("first_start");
  configFile = emptyConfigFile();
});
test.after(async () => {
  if (up && up.child.exitCode === null) up.child.kill("SIGKILL");
  await dir.remove();
});

let firstPassword = "";
let panelUrl = "";
let fingerprint = "";
let ca = "";

test("the first start prints the URL, the owner's e-mail and a generated password on a line of its own", async () => {
  const started = await start();
  panelUrl = started.url;
  fingerprint = started.fingerprint;
  ca = await readFile(join(dir.path, "data/tls/panel.crt"), "utf8");
  assert.match(started.banner, /First login/);
  assert.match(started.banner, /^\s+e-mail\s+owner@localhost$/m);
  const password = /^\s+password\s+(\S+)$/m.exec(started.banner)?.[1];
  assert.ok(password && password.length >= 16, "a password of at least 16 characters");
  firstPassword = password!;
  assert.not.ok(up.stderr().includes(firstPassword), "never in the log");
});

test("the local CLI's credential is in the data directory, owner-only, and the CLI works with nothing else", async () => {
  const file = join(dir.path, "data/cli-credential.json");
  assert.is((await stat(file)).mode & 0o777, 0o600);
  const me = await cli(["whoami", "--json"]);
  assert.is(me.code, 0, me.stderr);
  assert.equal([me.json!.kind, me.json!.role, me.json!.panel], ["api_client", "owner", panelUrl]);
  const token = await cli(["token", "create", "--server", "first-1", "--json"]);
  assert.is(token.code, 0, token.stderr);
});

/** AuthService as the console calls it: the panel's Origin, and the session cookie it was given. */
function consoleAuth() {
  let cookie: string | undefined;
  return createClient(
    AuthService,
    createConnectTransport({
      baseUrl: panelUrl,
      httpVersion: "2",
      nodeOptions: { ca },
      interceptors: [
        (next) => async (req) => {
          req.header.set("origin", panelUrl);
          if (cookie) req.header.set("cookie", cookie);
          const res = await next(req);
          cookie = res.header.get("set-cookie")?.split(";")[0] ?? cookie;
          return res;
        },
      ],
    }),
  );
}

test("the owner signs in with the printed password and must choose a new one", async () => {
  const auth = consoleAuth();
  const { identity } = await auth.login({ email: "owner@localhost", password: firstPassword });
  assert.ok(identity!.mustChangePassword);
});

test("operator reset-password on the panel host is the way back in; `login` from elsewhere stores a signing credential", async () => {
  const reset = await cli(["operator", "reset-password", "--email", "owner@localhost", "--password-stdin"], "recovered-password-1");
  assert.is(reset.code, 0, reset.stderr);
  const credentials = join(dir.path, "home-credentials.json");
  const refused = await cliWith(() => ({ ...env(), MYOSICAM_CREDENTIALS: credentials }))(
    ["login", "--panel", panelUrl, "--email", "owner@localhost", "--fingerprint", fingerprint],
    "recovered-password-1",
  );
  assert.is(refused.code, 1);
  assert.match(refused.stderr, /one-time password: sign in to the console once and choose a new one/);

  // Choose a password as the console would, then log in from "another machine".
  const auth = consoleAuth();
  await auth.login({ email: "owner@localhost", password: "recovered-password-1" });
  await auth.changePassword({ currentPassword: "recovered-password-1", newPassword: "my-own-password-2" });

  const remote = cliWith(() => ({ ...env(), MYOSICAM_DATA_DIR: join(dir.path, "elsewhere"), MYOSICAM_CREDENTIALS: credentials }));
  const untrusted = await remote(["login", "--panel", panelUrl, "--email", "owner@localhost"], "my-own-password-2");
  assert.is(untrusted.code, 1);
  assert.match(untrusted.stderr, /not one this machine trusts .*pass --fingerprint/);
  const wrongPin = await remote(["login", "--panel", panelUrl, "--email", "owner@localhost", "--fingerprint", `sha256:${"0".repeat(64)}`], "my-own-password-2");
  assert.is(wrongPin.code, 1);
  assert.match(wrongPin.stderr, /pinned fingerprint/);
  const login = await remote(["login", "--panel", panelUrl, "--email", "owner@localhost", "--fingerprint", fingerprint, "--json"], "my-own-password-2");
  assert.is(login.code, 0, login.stderr);
  assert.is((await stat(credentials)).mode & 0o777, 0o600);
  const me = await remote(["whoami", "--json"]);
  assert.is(me.code, 0, me.stderr);
  assert.is(me.json!.id, login.json!.clientId);
  const listed = await remote<{ clients: Array<{ id: string; name: string }> }>(["apiclient", "list", "--json"]);
  assert.is(me.json!.name, listed.json!.clients.find((c) => c.id === login.json!.clientId)!.name);
  const revoke = await cli(["apiclient", "revoke", login.json!.clientId as string]);
  assert.is(revoke.code, 0, revoke.stderr);
  const after = await remote(["whoami"]);
  assert.is(after.code, 1);
  assert.match(after.stderr, /refused this CLI's credential/);
});

test("a later start prints no password, keeps the CLI's credential, and the audit log holds all of it", async () => {
  const credential = async () => JSON.parse(await readFile(join(dir.path, "data/cli-credential.json"), "utf8")) as Record<string, string>;
  const before = await credential();
  await stop();
  const again = await start();
  assert.not.match(again.banner, /password/);
  assert.not.match(again.banner, /First login/);
  const after = await credential();
  assert.equal([after.clientId, after.secret], [before.clientId, before.secret], "the same client and secret");
  assert.is(after.panelUrl, again.url, "the URL follows the listener (port 0 picks a new one)");
  const audit = await cli(["audit", "list", "--json", "--limit", "500"]);
  const actions = (audit.json!.events as Array<{ action: string }>).map((e) => e.action);
  for (const action of [
    "first start: owner created",
    "operator reset-password (panel host)",
    "AuthService.ChangePassword",
    "ApiClientService.CreateApiClient",
    "ApiClientService.RevokeApiClient",
  ]) {
    assert.ok(actions.includes(action), action);
  }
  assert.is((await cli(["audit", "verify"])).code, 0);
  await stop();
});

test.run();
