import { readFile } from "node:fs/promises";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { agentVersion } from "../../agent/version.js";
import { agentIncompatibility, productVersion } from "../../services/lib/releases/compatibility.js";
import {
  compareVersions,
  generateReleaseKeys,
  manifestBytes,
  manifestFormat,
  parseManifest,
  releaseKeyId,
  signManifest,
  verifyManifest,
} from "../../services/lib/releases/manifest.js";

const test = suite("signed agent release manifests and version compatibility");

const manifest = {
  format: manifestFormat,
  version: "1.2.3",
  builtAt: "2026-12-03T10:00:00.000Z",
  artifacts: [{ target: "linux-x64", file: "myosicam-agent-linux-x64", sha256: "a".repeat(64), size: 1234 }],
} as const;
const keys = generateReleaseKeys();

test("a manifest signed with the release key verifies, byte for byte", () => {
  const bytes = manifestBytes({ ...manifest, artifacts: [...manifest.artifacts] });
  const signature = signManifest(bytes, keys.privatePem);
  assert.equal(verifyManifest(bytes, signature, keys.publicPem), { ...manifest, artifacts: [...manifest.artifacts] });
  assert.is(releaseKeyId(keys.publicPem), keys.keyId);
  assert.match(keys.keyId, /^[0-9a-f]{16}$/);
});

test("a changed manifest, another key's signature and a garbled signature are refused, naming the key", () => {
  const bytes = manifestBytes({ ...manifest, artifacts: [...manifest.artifacts] });
  const signature = signManifest(bytes, keys.privatePem);
  const changed = Buffer.from(bytes.toString().replace("1.2.3", "1.2.4"));
  assert.throws(() => verifyManifest(changed, signature, keys.publicPem), new RegExp(`not signed by release key ${keys.keyId}`));
  const other = generateReleaseKeys();
  assert.throws(() => verifyManifest(bytes, signManifest(bytes, other.privatePem), keys.publicPem), /not signed by release key/);
  assert.throws(() => verifyManifest(bytes, "not base64 at all!", keys.publicPem), /not signed by release key/);
  assert.throws(() => verifyManifest(bytes, "", keys.publicPem), /not signed by release key/);
});

test("keys that are not Ed25519 or not keys are refused in words", () => {
  assert.throws(() => releaseKeyId("garbage"), /not a PEM public key/);
  assert.throws(() => signManifest(Buffer.from("x"), "garbage"), /not a PEM private key/);
});

test("garbage manifests are refused with what is wrong", () => {
  const cases: Array<[unknown, RegExp]> = [
    ["{", /not JSON/],
    [null, /not an object/],
    [{ ...manifest, format: "x" }, /format/],
    [{ ...manifest, version: "1.2" }, /MAJOR.MINOR.PATCH/],
    [{ ...manifest, builtAt: "yesterday" }, /builtAt/],
    [{ ...manifest, artifacts: [] }, /no artifacts/],
    [{ ...manifest, artifacts: [{ ...manifest.artifacts[0], target: "windows-x64" }] }, /target/],
    [{ ...manifest, artifacts: [manifest.artifacts[0], manifest.artifacts[0]] }, /twice/],
    [{ ...manifest, artifacts: [{ ...manifest.artifacts[0], file: "../etc/passwd" }] }, /plain file name/],
    [{ ...manifest, artifacts: [{ ...manifest.artifacts[0], sha256: "xyz" }] }, /SHA-256/],
    [{ ...manifest, artifacts: [{ ...manifest.artifacts[0], size: -1 }] }, /size/],
  ];
  for (const [value, message] of cases) {
    const bytes = Buffer.from(typeof value === "string" ? value : JSON.stringify(value));
    assert.throws(() => parseManifest(bytes), message, JSON.stringify(value));
  }
});

test("versions order numerically, a pre-release before its release", () => {
  assert.is(compareVersions("0.10.0", "0.9.9"), 1);
  assert.is(compareVersions("1.0.0-rc.1", "1.0.0"), -1);
  assert.is(compareVersions("1.0.0", "1.0.0"), 0);
  assert.is(compareVersions("0.1.2", "0.1.10"), -1);
});

test("the panel accepts agents one minor version behind and ahead, and names the fix for the others", () => {
  assert.is(agentIncompatibility("0.4.7", "0.5.0"), undefined);
  assert.is(agentIncompatibility("0.5.1", "0.5.0"), undefined);
  assert.is(agentIncompatibility("0.6.0", "0.5.0"), undefined);
  assert.match(
    agentIncompatibility("0.3.9", "0.5.0")!,
    /agent 0\.3\.9 is too old for this panel \(0\.5\.0 accepts agents 0\.4\.x to 0\.6\.x\); upgrade it with `npx myosicam rollout start --version 0\.5\.0`/,
  );
  assert.match(agentIncompatibility("0.7.0", "0.5.0")!, /newer than this panel supports.*upgrade the panel first/);
  assert.match(agentIncompatibility("1.5.0", "2.0.0")!, /too old/);
  assert.match(agentIncompatibility("3.0.0", "2.0.0")!, /newer/);
  assert.match(agentIncompatibility("banana", "2.0.0")!, /not MAJOR\.MINOR\.PATCH/);
});

test("the agent run from source reports the project's version", async () => {
  const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8"));
  assert.is(productVersion, pkg.version);
  assert.is(agentVersion, pkg.version, "agent/version.ts's fallback follows package.json");
});

test.run();
