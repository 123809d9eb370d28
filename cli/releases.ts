import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { access, mkdir, readFile, writeFile } from "node:fs/promises";
import { userInfo } from "node:os";
import { join, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { uploadRelease } from "../services/agents/index.js";
import { ConfigError } from "../services/lib/config.js";
import {
  generateReleaseKeys,
  manifestFile,
  parseManifest,
  releaseKeyId,
  signManifest,
  signatureFile,
  verifyManifest,
} from "../services/lib/releases/manifest.js";
import { appendAudit } from "../services/panel/index.js";
import { RolloutService } from "../gen/myosicam/panel/v1/rollout_pb.js";
import { panelApi } from "./panel-client.js";
import { createCommandContext, isoOf, printJson } from "./context.js";
import { withDatabase } from "./database.js";

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** `release keygen --out <dir>`: a new Ed25519 release key pair; never overwrites one. */
export async function releaseKeygenCommand(options: { out: string; json: boolean }): Promise<void> {
  const dir = resolve(options.out);
  const privateFile = join(dir, "release-private.pem");
  const publicFile = join(dir, "release-public.pem");
  for (const file of [privateFile, publicFile]) {
    if (
      await access(file).then(
        () => true,
        () => false,
      )
    )
      throw new Error(`${file} exists: a release key is never overwritten (move it away first)`);
  }
  const keys = generateReleaseKeys();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(privateFile, keys.privatePem, { mode: 0o600, flag: "wx" });
  await writeFile(publicFile, keys.publicPem, { mode: 0o644, flag: "wx" });
  if (options.json) return printJson({ keyId: keys.keyId, privateKeyFile: privateFile, publicKeyFile: publicFile });
  process.stdout.write(
    `release key ${keys.keyId}\n` +
      `  private: ${privateFile} (0600) — keep it off the panel host; it signs releases\n` +
      `  public:  ${publicFile} — build agents with it (npm run build:agent -- --release-key ${publicFile})\n` +
      `           and give it to the panel (AGENT_RELEASE_PUBLIC_KEY_FILE=${publicFile})\n`,
  );
}

/** `release sign --key <private.pem> <dir>`: signs the manifest `npm run build:agent` wrote. */
export async function releaseSignCommand(dir: string, options: { key: string; json: boolean }): Promise<void> {
  const manifestBytes = await readFile(join(dir, manifestFile)).catch(() => {
    throw new Error(`${join(dir, manifestFile)} is missing: sign the directory \`npm run build:agent\` wrote`);
  });
  const manifest = parseManifest(manifestBytes);
  const privatePem = await readFile(options.key, "utf8").catch(() => {
    throw new Error(`cannot read the release private key ${options.key}`);
  });
  await writeFile(join(dir, signatureFile), signManifest(manifestBytes, privatePem));
  if (options.json) return printJson({ version: manifest.version, signature: join(dir, signatureFile) });
  process.stdout.write(`signed agent ${manifest.version} (${manifest.artifacts.map((a) => a.target).join(", ")}): ${join(dir, signatureFile)}\n`);
}

/** `release verify --key <public.pem> <dir>`: the signature and every file's size and SHA-256. */
export async function releaseVerifyCommand(dir: string, options: { key: string; json: boolean }): Promise<void> {
  const publicPem = await readFile(options.key, "utf8").catch(() => {
    throw new Error(`cannot read the release public key ${options.key}`);
  });
  const manifest = verifyManifest(await readFile(join(dir, manifestFile)), await readFile(join(dir, signatureFile), "utf8").catch(() => ""), publicPem);
  for (const a of manifest.artifacts) {
    const hash = createHash("sha256");
    await pipeline(createReadStream(join(dir, a.file)), hash).catch((err: NodeJS.ErrnoException) => {
      throw new Error(`${join(dir, a.file)}: ${err.code === "ENOENT" ? "missing" : err.message}`);
    });
    if (hash.digest("hex") !== a.sha256) throw new Error(`${join(dir, a.file)} is not the file that was signed (SHA-256 differs)`);
  }
  if (options.json) return printJson({ version: manifest.version, keyId: releaseKeyId(publicPem), targets: manifest.artifacts.map((a) => a.target) });
  process.stdout.write(`agent ${manifest.version}: signed by release key ${releaseKeyId(publicPem)}; every file matches\n`);
}

/** `release upload <dir>`: stores a signed release in the panel's database for agents to download. */
export async function releaseUploadCommand(dir: string, options: { json: boolean }): Promise<void> {
  const context = await createCommandContext();
  const keyFile = context.config.agentReleasePublicKeyFile;
  if (!keyFile) {
    throw new ConfigError(
      "AGENT_RELEASE_PUBLIC_KEY_FILE",
      "not set: the panel checks every release against the release public key; set it to the file `myosicam release keygen` wrote",
    );
  }
  const publicPem = await readFile(keyFile, "utf8").catch(() => {
    throw new ConfigError("AGENT_RELEASE_PUBLIC_KEY_FILE", `cannot read ${keyFile}`);
  });
  const by = `cli:${userInfo().username}`;
  const outcomes = await withDatabase(context, "panel", async (db) => {
    const stored = await uploadRelease(db, resolve(dir), publicPem, by);
    if (stored.some((o) => o.stored)) {
      await appendAudit(db, {
        actorKind: "system",
        actorId: by,
        actorName: by,
        action: "release.upload",
        target: `agent ${stored[0]!.version}`,
        outcome: "ok",
        detail: stored
          .filter((o) => o.stored)
          .map((o) => o.target)
          .join(", "),
        ip: "",
        requestId: "",
      });
    }
    return stored;
  });
  if (options.json) return printJson({ releases: outcomes });
  for (const o of outcomes) {
    process.stdout.write(
      `agent ${o.version} for ${o.target}: ${o.stored ? "stored" : "already stored (same content)"}, ${mib(o.size)} (${mib(o.compressedSize)} as served)\n`,
    );
  }
}

/** `release list`: what agents can be upgraded to (asked of the operator API). */
export async function releaseListCommand(options: { json: boolean }): Promise<void> {
  const { releases } = await (await panelApi()).client(RolloutService).listReleases({});
  const rows = releases.map((r) => ({
    version: r.version,
    target: r.target,
    sha256: r.sha256,
    size: Number(r.size),
    compressedSize: Number(r.compressedSize),
    keyId: r.keyId,
    builtAt: isoOf(r.builtAt),
    uploadedAt: isoOf(r.uploadedAt),
    uploadedBy: r.uploadedBy,
  }));
  if (options.json) return printJson({ releases: rows });
  if (rows.length === 0) {
    process.stdout.write("no agent release uploaded yet: npm run build:agent, sign it, then npx myosicam release upload dist/agent\n");
    return;
  }
  for (const r of rows) {
    process.stdout.write(
      `${r.version.padEnd(12)} ${r.target.padEnd(12)} ${mib(r.size).padStart(10)} (${mib(r.compressedSize)} served)  key ${r.keyId}  built ${r.builtAt}  uploaded ${r.uploadedAt} by ${r.uploadedBy}\n`,
    );
  }
}
