import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { makeTempDir, runCli } from "./helpers/cli.js";

const test = suite("the myosicam command line");

let dir: Awaited<ReturnType<typeof makeTempDir>>;
test.before(async () => {
  dir = await makeTempDir("cli");
});
test.after(() => dir.remove());

/** Runs `up` with `env` and answers its exit code and stderr. */
async function refusedStart(env: Record<string, string>) {
  const cli = runCli(["up"], { MYOSICAM_DATA_DIR: join(dir.path, "data"), EMBEDDED_POSTGRES_PORT: "0", PANEL_PORT: "0", ADMIN_PORT: "0", ...env });
  const code = await cli.exited;
  return { code, stderr: cli.stderr(), stdout: cli.stdout() };
}

function assertOneLine(result: { code: number; stderr: string }, pattern: RegExp) {
  assert.is(result.code, 1);
  const lines = result.stderr.trim().split("\n");
  assert.is(lines.length, 1, `one line, got:\n${result.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.not.match(result.stderr, /\n\s+at /, "no stack trace");
}

test("--help lists the commands", async () => {
  const cli = runCli(["--help"], {});
  assert.is(await cli.exited, 0);
  for (const command of ["up", "serve", "migrate"]) assert.match(cli.stdout(), new RegExp(`\\n\\s+${command}\\b`));
});

test("a malformed port stops start-up with one line naming PANEL_PORT", async () => {
  assertOneLine(await refusedStart({ PANEL_PORT: "eighty" }), /^myosicam: configuration error: PANEL_PORT: /);
});

test("a missing certificate file stops start-up naming PANEL_TLS_CERT", async () => {
  const result = await refusedStart({ PANEL_TLS_CERT: join(dir.path, "nope.crt"), PANEL_TLS_KEY: join(dir.path, "nope.key") });
  assertOneLine(result, /PANEL_TLS_CERT: .*nope\.crt does not exist/);
});

test("a certificate file that holds no certificate is refused", async () => {
  await writeFile(join(dir.path, "junk.crt"), "not a certificate");
  await writeFile(join(dir.path, "junk.key"), "not a key");
  assertOneLine(
    await refusedStart({ PANEL_TLS_CERT: join(dir.path, "junk.crt"), PANEL_TLS_KEY: join(dir.path, "junk.key") }),
    /PANEL_TLS_CERT: the certificate is not a PEM X\.509 certificate/,
  );
});

test("a data directory that is not a usable directory stops start-up naming MYOSICAM_DATA_DIR", async () => {
  const file = join(dir.path, "a-file");
  await writeFile(file, "x");
  assertOneLine(await refusedStart({ MYOSICAM_DATA_DIR: file }), /MYOSICAM_DATA_DIR: .*a-file is not a directory/);
  assertOneLine(await refusedStart({ MYOSICAM_DATA_DIR: join(file, "below") }), /MYOSICAM_DATA_DIR: /);
});

test("a weak-format encryption key stops start-up naming PANEL_ENCRYPTION_KEY", async () => {
  assertOneLine(await refusedStart({ PANEL_ENCRYPTION_KEY: "1234" }), /PANEL_ENCRYPTION_KEY: must be 64 hex characters/);
});

test("an unreachable DATABASE_URL stops start-up naming it, without echoing its password", async () => {
  const result = await refusedStart({ DATABASE_URL: "postgres://u:s3cretpw@127.0.0.1:1/panel", ADMIN_DATABASE_URL: "postgres://u:s3cretpw@127.0.0.1:1/admin" });
  assertOneLine(result, /DATABASE_URL: cannot use the panel database: connection refused/);
  assert.not.match(result.stderr, /s3cretpw/);
});

test("serve refuses an unknown service name and lists the known ones", async () => {
  const cli = runCli(["serve", "--services=agents,billing"], { MYOSICAM_DATA_DIR: join(dir.path, "data") });
  assertOneLine(
    { code: await cli.exited, stderr: cli.stderr() },
    /unknown service billing; known services: crypto, jobs, licensing, agents, install, admin, panel/,
  );
});

test("serve refuses a service without the services it needs in the same process, and says what to run", async () => {
  const cli = runCli(["serve", "--services=agents"], { MYOSICAM_DATA_DIR: join(dir.path, "data") });
  assertOneLine({ code: await cli.exited, stderr: cli.stderr() }, /agents needs crypto, panel in the same process: run --services=crypto,panel,agents/);
});

test("an unknown command is a usage error (exit 2)", async () => {
  const cli = runCli(["frobnicate"], {});
  assert.is(await cli.exited, 2);
  assert.match(cli.stderr(), /unknown command/);
});

test.run();
