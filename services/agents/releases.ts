import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { constants, createZstdCompress } from "node:zlib";
import type { Knex } from "../lib/db.js";
import { manifestFile, releaseKeyId, signatureFile, verifyManifest, type ReleaseManifest } from "../lib/releases/manifest.js";

/** Stored chunks are this large (compressed), so a download streams without holding a release in memory. */
export const releaseChunkBytes = 1 << 20;

/** A stored release of one target, as listed. */
export interface AgentRelease {
  version: string;
  target: string;
  sha256: string;
  size: number;
  compressedSize: number;
  encoding: string;
  keyId: string;
  builtAt: Date;
  uploadedAt: Date;
  uploadedBy: string;
}

interface ReleaseRow {
  version: string;
  target: string;
  sha256: string;
  size: string;
  compressed_size: string;
  encoding: string;
  manifest: string;
  signature: string;
  key_id: string;
  built_at: Date;
  uploaded_at: Date;
  uploaded_by: string;
}

const releaseOf = (r: ReleaseRow): AgentRelease => ({
  version: r.version,
  target: r.target,
  sha256: r.sha256,
  size: Number(r.size),
  compressedSize: Number(r.compressed_size),
  encoding: r.encoding,
  keyId: r.key_id,
  builtAt: r.built_at,
  uploadedAt: r.uploaded_at,
  uploadedBy: r.uploaded_by,
});

/** What an upload did per target. */
export interface UploadOutcome {
  version: string;
  target: string;
  stored: boolean;
  size: number;
  compressedSize: number;
}

/**
 * Stores the release in `dir` (manifest.json, manifest.sig and the executables it lists) after
 * checking the signature with the trusted release key and every file's size and SHA-256; each
 * executable zstd-compressed in chunks, all targets in one transaction. A target already stored
 * with the same content is left alone; with other content it is refused (a version is immutable).
 */
export async function uploadRelease(db: Knex, dir: string, trustedPublicPem: string, uploadedBy: string): Promise<UploadOutcome[]> {
  const manifestBytes = await readFile(join(dir, manifestFile)).catch(() => {
    throw new Error(`${join(dir, manifestFile)} is missing: upload the directory \`npm run build:agent\` wrote`);
  });
  const signature = await readFile(join(dir, signatureFile), "utf8").catch(() => {
    throw new Error(`${join(dir, signatureFile)} is missing: sign the release first (npx myosicam release sign --key <private.pem> ${dir})`);
  });
  const manifest = verifyManifest(manifestBytes, signature, trustedPublicPem);
  const keyId = releaseKeyId(trustedPublicPem);
  const prepared: Array<{ artifact: ReleaseManifest["artifacts"][number]; chunks: Buffer[] | undefined; compressedSize: number }> = [];
  for (const artifact of manifest.artifacts) {
    const existing = await selectRelease(db, manifest.version, artifact.target);
    if (existing) {
      if (existing.sha256 !== artifact.sha256) {
        throw new Error(
          `agent ${manifest.version} for ${artifact.target} is already stored with other content: a version is never replaced; build a new version`,
        );
      }
      prepared.push({ artifact, chunks: undefined, compressedSize: existing.compressedSize });
      continue;
    }
    const { chunks, compressedSize } = await compressChecked(join(dir, artifact.file), artifact);
    prepared.push({ artifact, chunks, compressedSize });
  }
  await db.transaction(async (trx) => {
    for (const { artifact, chunks, compressedSize } of prepared) {
      if (!chunks) continue;
      await trx("agent_releases").insert({
        version: manifest.version,
        target: artifact.target,
        sha256: artifact.sha256,
        size: artifact.size,
        compressed_size: compressedSize,
        encoding: "zstd",
        manifest: manifestBytes.toString("utf8"),
        signature: signature.trim(),
        key_id: keyId,
        built_at: new Date(manifest.builtAt),
        uploaded_by: uploadedBy,
      });
      for (let i = 0; i < chunks.length; i += 16) {
        await trx("agent_release_chunks").insert(
          chunks.slice(i, i + 16).map((data, j) => ({ version: manifest.version, target: artifact.target, seq: i + j, data })),
        );
      }
    }
  });
  return prepared.map((p) => ({
    version: manifest.version,
    target: p.artifact.target,
    stored: p.chunks !== undefined,
    size: p.artifact.size,
    compressedSize: p.compressedSize,
  }));
}

/** Reads `file`, checks it against the manifest's size and SHA-256 and answers it zstd-compressed, in chunks. */
async function compressChecked(file: string, artifact: ReleaseManifest["artifacts"][number]): Promise<{ chunks: Buffer[]; compressedSize: number }> {
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) throw new Error(`${file} is missing: the manifest lists it for ${artifact.target}`);
  if (info.size !== artifact.size) throw new Error(`${file} is ${info.size} bytes, the manifest says ${artifact.size}: not the file that was signed`);
  const hash = createHash("sha256");
  const pieces: Buffer[] = [];
  const compress = createZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: 3 } });
  const source = createReadStream(file);
  source.on("data", (chunk) => hash.update(chunk));
  await pipeline(source, compress, async (compressed: AsyncIterable<Buffer>) => {
    for await (const piece of compressed) pieces.push(piece);
  });
  if (hash.digest("hex") !== artifact.sha256) throw new Error(`${file} does not have the SHA-256 the manifest lists: not the file that was signed`);
  const whole = Buffer.concat(pieces);
  const chunks: Buffer[] = [];
  for (let at = 0; at < whole.length; at += releaseChunkBytes) chunks.push(whole.subarray(at, at + releaseChunkBytes));
  return { chunks, compressedSize: whole.length };
}

export async function selectRelease(db: Knex, version: string, target: string): Promise<(AgentRelease & { manifest: string; signature: string }) | undefined> {
  const row = (await db("agent_releases").where({ version, target }).first()) as ReleaseRow | undefined;
  return row && { ...releaseOf(row), manifest: row.manifest, signature: row.signature };
}

export async function listReleases(db: Knex): Promise<AgentRelease[]> {
  const rows = (await db("agent_releases").orderBy([{ column: "uploaded_at", order: "desc" }, "target"])) as ReleaseRow[];
  return rows.map(releaseOf);
}

/** Up to `limit` chunks of a release from `fromSeq` on, in order. */
export async function readReleaseChunks(db: Knex, version: string, target: string, fromSeq: number, limit: number): Promise<Buffer[]> {
  const rows = await db("agent_release_chunks").where({ version, target }).where("seq", ">=", fromSeq).orderBy("seq").limit(limit).select("data");
  return rows.map((r) => r.data as Buffer);
}
