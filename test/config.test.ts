import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ConfigError, loadConfig, readEnv } from "../services/lib/config.js";

const test = suite("configuration");

function refusal(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env, "/srv/myosicam");
  } catch (err) {
    assert.instance(err, ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected ${JSON.stringify(env)} to be refused`);
}

test("with nothing set, every default applies", () => {
  const config = loadConfig({}, "/srv/myosicam");
  assert.is(config.dataDir, "/srv/myosicam/data");
  assert.equal(config.panel, { host: "127.0.0.1", port: 8443 });
  assert.equal(config.admin, { host: "127.0.0.1", port: 8444 });
  assert.equal(config.tls, {});
  assert.is(config.databaseUrl, undefined);
  assert.is(config.logLevel, "info");
});

test("a malformed port is refused naming the setting", () => {
  const err = refusal({ PANEL_PORT: "84x3" });
  assert.is(err.setting, "PANEL_PORT");
  assert.match(err.message, /PANEL_PORT: must be a TCP port number/);
  assert.is(refusal({ ADMIN_PORT: "70000" }).setting, "ADMIN_PORT");
});

test("obviously weak encryption keys are refused, each with the reason", () => {
  const weak: Array<[string, RegExp]> = [
    ["0".repeat(64), /all zeros/],
    ["ff".repeat(32), /every byte is the same/],
    ["ab12".repeat(16), /repeats a 2-byte pattern/],
    ["deadbeef".repeat(8), /repeats a 4-byte pattern/],
    [Array.from({ length: 32 }, (_, i) => i.toString(16).padStart(2, "0")).join(""), /counting sequence/],
    ["00010203".repeat(4) + "0a0b0c0d".repeat(4), /too few distinct bytes/],
  ];
  for (const [key, reason] of weak) {
    const err = refusal({ PANEL_ENCRYPTION_KEY: key });
    assert.is(err.setting, "PANEL_ENCRYPTION_KEY");
    assert.match(err.message, reason, key);
    assert.not.ok(err.message.includes(key), "the key is not echoed");
  }
  assert.is(
    refusal({ PANEL_ENCRYPTION_KEY: "3632f3da0a8c1487085be1515c2486dd8a52bc340fd743fb0062d2e6794aaf95", PANEL_ENCRYPTION_KEY_PREVIOUS: "0".repeat(64) })
      .setting,
    "PANEL_ENCRYPTION_KEY_PREVIOUS",
  );
});

test("a previous key without a new one, or equal to it, is refused", () => {
  const key = "3632f3da0a8c1487085be1515c2486dd8a52bc340fd743fb0062d2e6794aaf95";
  assert.is(refusal({ PANEL_ENCRYPTION_KEY_PREVIOUS: key }).setting, "PANEL_ENCRYPTION_KEY");
  assert.is(refusal({ PANEL_ENCRYPTION_KEY: key, PANEL_ENCRYPTION_KEY_PREVIOUS: key }).setting, "PANEL_ENCRYPTION_KEY_PREVIOUS");
});

test("panel and admin on the same port are refused", () => {
  assert.is(refusal({ PANEL_PORT: "9000", ADMIN_PORT: "9000" }).setting, "ADMIN_PORT");
});

test("an encryption key that is not 64 hex characters is refused, and says how to make one", () => {
  const err = refusal({ PANEL_ENCRYPTION_KEY: "abc123" });
  assert.is(err.setting, "PANEL_ENCRYPTION_KEY");
  assert.match(err.message, /64 hex characters/);
  assert.match(err.message, /keys generate/);
  assert.not.match(err.message, /abc123/, "the key itself is not echoed");
  assert.is(refusal({ PANEL_ENCRYPTION_KEY: "g".repeat(64) }).setting, "PANEL_ENCRYPTION_KEY");
  const key = "3632F3DA0A8C1487085BE1515C2486DD8A52BC340FD743FB0062D2E6794AAF95";
  assert.is(loadConfig({ PANEL_ENCRYPTION_KEY: key }).encryptionKeyHex, key.toLowerCase());
});

test("a certificate without its key (or the reverse) is refused", () => {
  assert.is(refusal({ PANEL_TLS_CERT: "/etc/ssl/panel.crt" }).setting, "PANEL_TLS_KEY");
  assert.is(refusal({ PANEL_TLS_KEY: "/etc/ssl/panel.key" }).setting, "PANEL_TLS_CERT");
});

test("database URLs must be postgres URLs naming a database", () => {
  assert.is(refusal({ DATABASE_URL: "mysql://x@y/z" }).setting, "DATABASE_URL");
  assert.is(refusal({ ADMIN_DATABASE_URL: "postgres://user@host:5432" }).setting, "ADMIN_DATABASE_URL");
  assert.is(refusal({ DATABASE_URL: "not a url" }).setting, "DATABASE_URL");
  assert.is(loadConfig({ DATABASE_URL: "postgres://u:p@db:5432/panel" }).databaseUrl, "postgres://u:p@db:5432/panel");
});

test("the database pool size is 10 unless set, and only a whole number from 2 to 1000 is taken", () => {
  assert.is(loadConfig({}).databasePoolSize, 10);
  assert.is(loadConfig({ DATABASE_POOL_SIZE: "40" }).databasePoolSize, 40);
  for (const bad of ["1", "1001", "ten", "-5", "2.5"]) {
    const err = refusal({ DATABASE_POOL_SIZE: bad });
    assert.is(err.setting, "DATABASE_POOL_SIZE");
    assert.match(err.message, bad === "1" || bad === "1001" ? /between 2 and 1000/ : /whole number/);
  }
});

test("a panel process delivers 1000 commands ahead of their results unless AGENT_COMMANDS_IN_FLIGHT says otherwise (1 to 100000)", () => {
  assert.is(loadConfig({}).agentCommandsInFlight, 1000);
  assert.is(loadConfig({ AGENT_COMMANDS_IN_FLIGHT: "2000" }).agentCommandsInFlight, 2000);
  for (const bad of ["0", "100001", "many"]) assert.is(refusal({ AGENT_COMMANDS_IN_FLIGHT: bad }).setting, "AGENT_COMMANDS_IN_FLIGHT");
});

test("an unknown log level and out-of-range numbers are refused", () => {
  assert.is(refusal({ LOG_LEVEL: "loud" }).setting, "LOG_LEVEL");
  assert.is(refusal({ SHUTDOWN_TIMEOUT_SECONDS: "0" }).setting, "SHUTDOWN_TIMEOUT_SECONDS");
  assert.is(refusal({ RPC_READ_MAX_BYTES: "-1" }).setting, "RPC_READ_MAX_BYTES");
});

test("trust and licensing settings are checked: admin key pair, caller secret, license key, admin URL", () => {
  const key = "412c74b6171a77b8adb4d17078b32bed130e6dd80c6dca99bf4daa39ea1d8c72";
  assert.is(refusal({ ADMIN_ENCRYPTION_KEY_PREVIOUS: key }).setting, "ADMIN_ENCRYPTION_KEY");
  assert.is(refusal({ ADMIN_ENCRYPTION_KEY: key, ADMIN_ENCRYPTION_KEY_PREVIOUS: key }).setting, "ADMIN_ENCRYPTION_KEY_PREVIOUS");
  assert.match(
    refusal({ PANEL_CALLER_SECRET: "short" }).message,
    /^PANEL_CALLER_SECRET: must be the 64 lowercase hex characters printed by `npx myosicam caller create`/,
  );
  assert.is(refusal({ PANEL_CALLER_ID: "has space" }).setting, "PANEL_CALLER_ID");
  assert.is(refusal({ PANEL_LICENSE_KEY: "x" }).setting, "PANEL_LICENSE_KEY");
  assert.match(refusal({ ADMIN_URL: "http://admin.example.com" }).message, /^ADMIN_URL: must start with https:\/\//);
  assert.match(refusal({ ADMIN_URL: "https://admin.example.com/v1" }).message, /only scheme, host and port/);
  const config = loadConfig({ ADMIN_URL: "https://admin.example.com:8444/", PANEL_CALLER_SECRET: "a".repeat(64) }, "/srv/myosicam");
  assert.is(config.adminUrl, "https://admin.example.com:8444");
  assert.equal(config.panelCaller, { id: "panel", secret: "a".repeat(64) });
});

test("agent settings: interval, missed heartbeats, approval mode, public URL", () => {
  const config = loadConfig({}, "/srv/myosicam");
  assert.equal([config.agentHeartbeatIntervalSeconds, config.agentMissedHeartbeats, config.requireAgentApproval], [60, 3, false]);
  assert.is(config.agentArtifactDir, "/srv/myosicam/dist/agent");
  assert.ok(loadConfig({ REQUIRE_AGENT_APPROVAL: "yes" }, "/srv/myosicam").requireAgentApproval);
  assert.match(refusal({ REQUIRE_AGENT_APPROVAL: "maybe" }).message, /^REQUIRE_AGENT_APPROVAL: must be true or false/);
  assert.is(refusal({ AGENT_HEARTBEAT_INTERVAL_SECONDS: "0" }).setting, "AGENT_HEARTBEAT_INTERVAL_SECONDS");
  assert.is(refusal({ PANEL_PUBLIC_URL: "panel:8443" }).setting, "PANEL_PUBLIC_URL");
});

test("config/.env is read and the environment wins over it", async () => {
  const cwd = await mkdtemp(join(tmpdir(), "myosicam-config-"));
  try {
    await writeFile(join(cwd, "x.env"), "PANEL_PORT=9443\nADMIN_PORT=9444\n# comment\nLOG_LEVEL=debug\n");
    const env = readEnv({ MYOSICAM_CONFIG_FILE: "x.env", ADMIN_PORT: "7444" }, cwd);
    const config = loadConfig(env, cwd);
    assert.is(config.panel.port, 9443);
    assert.is(config.admin.port, 7444);
    assert.is(config.logLevel, "debug");
    assert.equal(readEnv({ PANEL_PORT: "1" }, cwd), { PANEL_PORT: "1" }, "no config/.env is fine");
  } finally {
    await rm(cwd, { recursive: true, force: true });
  }
});

test("a named config file that does not exist is refused", () => {
  try {
    readEnv({ MYOSICAM_CONFIG_FILE: "/nonexistent/.env" });
    assert.unreachable("should have thrown");
  } catch (err) {
    assert.is((err as ConfigError).setting, "MYOSICAM_CONFIG_FILE");
  }
});

test.run();
