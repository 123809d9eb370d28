import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { createKeyring } from "../../services/lib/secrets/keyring.js";
import { createDatabase } from "../../services/lib/db.js";
import { createLogger } from "../../services/lib/log.js";
import { makeTempDir, cliWith } from "../helpers/cli.js";
import { newKey } from "../helpers/keys.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("`myosicam server add|list|remove`: saved servers with sealed credentials, over the operator API");

let panel: PanelHost;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
const env = () => ({ MYOSICAM_DATA_DIR: panel.dataDir, LOG_LEVEL: "warn" });
const cli = cliWith(env);

test.before(async () => {
  dir = await makeTempDir("saved_servers");
  panel = await startPanelHost("saved_servers");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir.path, "key")]);
});
test.after(async () => {
  await panel.stop();
  await dir.remove();
});

test("add with a password on stdin and with a key file: listed without credentials, stored sealed for their rows", async () => {
  const pw = await cli(["server", "add", "oscam-01", "--host", "10.0.0.5", "--user", "admin", "--password-stdin", "--json"], "Sup3r-Secret-pw\n");
  assert.is(pw.code, 0, pw.stderr);
  const key = await cli([
    "server",
    "add",
    "oscam-02",
    "--host",
    "oscam-02.example.net",
    "--port",
    "2222",
    "--user",
    "root",
    "--key-file",
    join(dir.path, "key"),
    "--json",
  ]);
  assert.is(key.code, 0, key.stderr);
  const list = await cli<{ servers: Array<{ name: string; port: number; authKind: string; hostKeyFingerprint: string | null }> }>(["server", "list", "--json"]);
  assert.equal(
    list.json!.servers.map((s) => [s.name, s.port, s.authKind, s.hostKeyFingerprint]),
    [
      ["oscam-01", 22, "password", null],
      ["oscam-02", 2222, "private_key", null],
    ],
  );
  assert.not.ok(list.stdout.includes("Sup3r-Secret-pw") || list.stdout.includes("PRIVATE KEY"));
  const db = createDatabase(panel.config.databaseUrl!, createLogger({ level: "silent" }));
  try {
    const keyring = createKeyring(newKey);
    for (const row of await db("saved_servers").select("id", "name", "ssh_credential_encrypted")) {
      assert.match(row.ssh_credential_encrypted, /^enc:v1:/);
      const plain = keyring
        .open(row.ssh_credential_encrypted, { table: "saved_servers", column: "ssh_credential_encrypted", rowId: row.id })
        .plaintext.toString();
      assert.is(plain, row.name === "oscam-01" ? "Sup3r-Secret-pw" : await readFile(join(dir.path, "key"), "utf8"));
    }
  } finally {
    await db.destroy();
  }
  assert.not.ok((pw.stdout + pw.stderr + key.stdout + key.stderr).includes("Sup3r-Secret-pw"), "the password is never printed");
});

test("bad input is refused with the field named, and nothing is saved", async () => {
  const cases: Array<[string[], string | undefined, RegExp]> = [
    [["server", "add", "bad name", "--host", "h", "--user", "u", "--password-stdin"], "pw", /name: 1-64 letters/],
    [["server", "add", "x1", "--host", "h;rm -rf /", "--user", "u", "--password-stdin"], "pw", /host: a host name or IP address/],
    [["server", "add", "x2", "--host", "h", "--user", "u", "--key-file", join(dir.path, "key.pub")], undefined, /private key: this is a public key/],
    [["server", "add", "x3", "--host", "h", "--user", "u", "--password-stdin"], "", /password: empty/],
    [["server", "add", "x4", "--host", "h", "--user", "u"], undefined, /exactly one credential/],
    [["server", "add", "oscam-01", "--host", "h", "--user", "u", "--password-stdin"], "pw", /a saved server named "oscam-01" exists/],
  ];
  for (const [args, input, message] of cases) {
    const run = await cli(args, input);
    assert.is.not(run.code, 0, args.join(" "));
    assert.match(run.stderr, message);
  }
  assert.is((await cli<{ servers: unknown[] }>(["server", "list", "--json"])).json!.servers.length, 2);
});

test("server install refuses what the installer would refuse, before anything is queued", async () => {
  const queued = () => panel.db("job_runs").whereIn("queue", ["install.agent", "install.uninstall"]).count("* as n");
  const cases: Array<[string[], RegExp]> = [
    [["server", "install", "nope"], /no saved server "nope"/],
    [["server", "install", "oscam-01", "--root", "su"], /--root: direct, sudo or sudo-nopasswd/],
    [["server", "install", "oscam-01", "--oscam-dir", "etc/oscam"], /oscam_dirs/],
    [["server", "install", "oscam-02", "--root", "sudo"], /sudo with a password needs a saved password/],
  ];
  for (const [args, message] of cases) {
    const run = await cli(args);
    assert.is.not(run.code, 0, args.join(" "));
    assert.match(run.stderr, message, run.stderr);
  }
  assert.is(Number((await queued())[0]!.n), 0, "no install was queued");
});

test("remove deletes a saved server with its credential; removing it again says there is none", async () => {
  assert.is((await cli(["server", "remove", "oscam-02"])).code, 0);
  const again = await cli(["server", "remove", "oscam-02"]);
  assert.is.not(again.code, 0);
  assert.match(again.stderr, /no saved server "oscam-02"/);
  assert.equal(
    (await cli<{ servers: Array<{ name: string }> }>(["server", "list", "--json"])).json!.servers.map((s) => s.name),
    ["oscam-01"],
  );
});

test.run();
