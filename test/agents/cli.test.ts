import { suite } from "uvu";
import * as assert from "uvu/assert";
import { cliWith } from "../helpers/cli.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("`myosicam token …`, `agent …` and `email …` against a running panel, over the operator API");

let panel: PanelHost;
// Only the data directory: the CLI finds the credential the panel's first start wrote there.
const env = () => ({ MYOSICAM_DATA_DIR: panel.dataDir, LOG_LEVEL: "warn" });
const cli = cliWith(env);

test.before(async () => {
  panel = await startPanelHost("agents_cli", { PANEL_PUBLIC_URL: "https://panel.example.com:8443" });
});
test.after(() => panel.stop());

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
  const [row] = await panel.db("email_settings").select("smtp_password", "alert_recipients");
  assert.match(row.smtp_password, /^enc:v1:/);
  assert.equal(row.alert_recipients, ["ops@example.com"]);
  const shown = await cli(["email", "show", "--json"]);
  assert.equal(shown.json, {
    provider: "smtp",
    from: "panel@example.com",
    recipients: ["ops@example.com"],
    smtp: { host: "smtp.example.com", port: 587, secure: false, username: "alerts", passwordSet: true },
  });
  assert.not.ok(shown.stdout.includes("smtp-pass-42"), "the password is never answered");
  const bad = await cli(["email", "smtp", "--host", "h", "--from", "not-an-address", "--to", "ops@example.com"]);
  assert.match(bad.stderr, /"not-an-address" is not an e-mail address/);
});

test.run();
