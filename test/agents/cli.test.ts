import { suite } from "uvu";
import * as assert from "uvu/assert";
import { makeTempDir, cliWith } from "../helpers/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/database.js";
import { newKey } from "../helpers/keys.js";

const test = suite("`myosicam token …`, `agent …` and `email …` on the panel's database");

let database: TestDatabase;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
const env = () => ({
  MYOSICAM_DATA_DIR: dir.path,
  DATABASE_URL: database.url,
  PANEL_ENCRYPTION_KEY: newKey,
  LOG_LEVEL: "warn",
  PANEL_PUBLIC_URL: "https://panel.example.com:8443",
});
const cli = cliWith(env);

test.before(async () => {
  dir = await makeTempDir("agents_cli");
  database = await createTestDatabase("agents_cli");
});
test.after(async () => {
  await database.drop();
  await dir.remove();
});

test("token create prints the token once and a bootstrap command that passes it on stdin", async () => {
  const created = await cli<{ token: string; command: string; expiresAt: string; hashPrefix: string }>([
    "token",
    "create",
    "--server",
    "oscam-01",
    "--ttl",
    "2h",
    "--json",
  ]);
  assert.is(created.code, 0, created.stderr);
  assert.match(created.json!.token, /^[0-9a-f]{64}$/);
  assert.match(
    created.json!.command,
    /^printf '%s\\n' '[0-9a-f]{64}' \| MYOSICAM_PANEL_URL=https:\/\/panel\.example\.com:8443 MYOSICAM_PANEL_FINGERPRINT=sha256:[0-9a-f]{64} MYOSICAM_PANEL_PUBKEY_PIN='sha256\/\/[A-Za-z0-9+/]{43}=' sh bootstrap\.sh$/,
  );
  const ttl = Date.parse(created.json!.expiresAt) - Date.now();
  assert.ok(ttl > 7100_000 && ttl <= 7200_000);
  const list = await cli(["token", "list"]);
  assert.match(list.stdout, new RegExp(`^${created.json!.hashPrefix}\\s+issued\\s+oscam-01`, "m"));
  assert.not.ok(list.stdout.includes(created.json!.token));
  assert.is((await cli(["token", "revoke", created.json!.hashPrefix])).code, 0);
  assert.match((await cli(["token", "list"])).stdout, /revoked\s+oscam-01/);
});

test("agent list shows every server with its status; approve and revoke name what they did", async () => {
  const list = await cli<{ agents: Array<{ id: string; name: string; status: string }> }>(["agent", "list", "--json"]);
  assert.equal(
    list.json!.agents.map((a) => [a.name, a.status]),
    [["oscam-01", "new"]],
  );
  const id = list.json!.agents[0]!.id;
  assert.match((await cli(["agent", "revoke", id])).stdout, /revoked: its next call is refused/);
  const bad = await cli(["agent", "approve", "nope"]);
  assert.is(bad.code, 1);
  assert.match(bad.stderr, /"nope" is not a server id/);
});

test("email smtp stores the password sealed, read from stdin", async () => {
  const set = await cli(
    [
      "email",
      "smtp",
      "--host",
      "smtp.example.com",
      "--port",
      "587",
      "--user",
      "alerts",
      "--password-stdin",
      "--from",
      "panel@example.com",
      "--to",
      "ops@example.com",
      "--json",
    ],
    "smtp-pass-42\n",
  );
  assert.is(set.code, 0, set.stderr);
  const { default: pg } = await import("pg");
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  const { rows } = await client.query("select smtp_password, alert_recipients from email_settings");
  await client.end();
  assert.match(rows[0].smtp_password, /^enc:v1:/);
  assert.equal(rows[0].alert_recipients, ["ops@example.com"]);
  const bad = await cli(["email", "smtp", "--host", "h", "--from", "not-an-address", "--to", "ops@example.com"]);
  assert.match(bad.stderr, /"not-an-address" is not an e-mail address/);
});

test.run();
