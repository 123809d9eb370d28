import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { makeTempDir, runCli } from "../helpers/cli.js";
import { writeRelease } from "../helpers/releases.js";

const test = suite("`myosicam release keygen|sign|verify`: the release key and signatures from the command line");

let dir: Awaited<ReturnType<typeof makeTempDir>>;
const run = async (args: string[]) => {
  const cli = runCli(args, {});
  const code = await cli.exited;
  return { code, stdout: cli.stdout(), stderr: cli.stderr() };
};

test.before(async () => {
  dir = await makeTempDir("release-cli");
});
test.after(async () => {
  await dir.remove();
});

test("keygen writes a 0600 private key and the public key, names the key, and never overwrites one", async () => {
  const keys = join(dir.path, "keys");
  const made = await run(["release", "keygen", "--out", keys, "--json"]);
  assert.is(made.code, 0, made.stderr);
  const { keyId } = JSON.parse(made.stdout);
  assert.match(keyId, /^[0-9a-f]{16}$/);
  assert.is((await stat(join(keys, "release-private.pem"))).mode & 0o777, 0o600);
  assert.match(await readFile(join(keys, "release-public.pem"), "utf8"), /BEGIN PUBLIC KEY/);
  const before = await readFile(join(keys, "release-private.pem"), "utf8");
  const again = await run(["release", "keygen", "--out", keys]);
  assert.is(again.code, 1);
  assert.match(again.stderr, /release-private\.pem exists: a release key is never overwritten/);
  assert.is(await readFile(join(keys, "release-private.pem"), "utf8"), before, "the key is untouched");
});

test("sign then verify accepts the release; no signature or a changed executable is refused in words (other keys: manifest.test.ts)", async () => {
  const keys = join(dir.path, "keys");
  const release = await writeRelease(join(dir.path, "release"), {
    version: "0.2.0",
    executable: Buffer.from("#!/bin/sh\nexit 0\n"),
    keys: { privatePem: "" },
    sign: false,
  });
  const unsigned = await run(["release", "verify", "--key", join(keys, "release-public.pem"), release]);
  assert.is(unsigned.code, 1);
  assert.match(unsigned.stderr, /not signed by release key/);
  const signed = await run(["release", "sign", "--key", join(keys, "release-private.pem"), release]);
  assert.is(signed.code, 0, signed.stderr);
  assert.match(signed.stdout, /signed agent 0\.2\.0 \(linux-x64\)/);
  const verified = await run(["release", "verify", "--key", join(keys, "release-public.pem"), release]);
  assert.is(verified.code, 0, verified.stderr);
  assert.match(verified.stdout, /agent 0\.2\.0: signed by release key [0-9a-f]{16}; every file matches/);

  await writeFile(join(release, "myosicam-agent-linux-x64"), "#!/bin/sh\nexit 1\n");
  const changed = await run(["release", "verify", "--key", join(keys, "release-public.pem"), release]);
  assert.is(changed.code, 1);
  assert.match(changed.stderr, /myosicam-agent-linux-x64 is not the file that was signed/);
});

test.run();
