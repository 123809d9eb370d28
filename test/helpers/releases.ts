import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { manifestBytes, manifestFile, manifestFormat, signManifest, signatureFile } from "../../services/lib/releases/manifest.js";

/**
 * Writes a release directory as `npm run build:agent` and `release sign` leave it: one
 * linux-x64 executable, the manifest, and its signature (unless `sign: false`).
 */
export async function writeRelease(
  dir: string,
  options: { version: string; executable: Buffer; keys: { privatePem: string }; sign?: boolean; target?: string },
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const target = options.target ?? "linux-x64";
  const file = `myosicam-agent-${target}`;
  await writeFile(join(dir, file), options.executable, { mode: 0o755 });
  const bytes = manifestBytes({
    format: manifestFormat,
    version: options.version,
    builtAt: new Date().toISOString(),
    artifacts: [{ target, file, sha256: createHash("sha256").update(options.executable).digest("hex"), size: options.executable.length }],
  });
  await writeFile(join(dir, manifestFile), bytes);
  if (options.sign !== false) await writeFile(join(dir, signatureFile), signManifest(bytes, options.keys.privatePem));
  return dir;
}
