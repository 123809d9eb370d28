/**
 * Builds the console (web/) into web/dist when it is missing or was built from other sources: the
 * panel's start runs it, so `npm ci && npm start` always serves the console of its checkout.
 * `npm run build:web` runs it by hand (`--force` builds even when nothing changed).
 *
 * "Other sources" is decided by content, not by file times: a hash over the console's sources,
 * the generated contracts it imports and the lock file, kept in dist/build.json.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { promisify } from "node:util";
import { brotliCompress, gzip as gzipCallback, constants as zlib } from "node:zlib";

const brotli = promisify(brotliCompress);
const gzip = promisify(gzipCallback);

const webDir = import.meta.dirname;
const repoDir = resolve(webDir, "..");
export const consoleDist = join(webDir, "dist");

/** What the bundle is made of: a change in any of these makes it stale. */
const inputs = ["web/src", "web/index.html", "web/vite.config.ts", "web/public", "gen/myosicam/panel", "gen/myosicam/agent", "gen/buf", "package-lock.json"];

async function filesUnder(path: string): Promise<string[]> {
  const entries = await readdir(path, { recursive: true, withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOTDIR") return null;
    if (err.code === "ENOENT") return [];
    throw err;
  });
  if (entries === null) return [path];
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

/** The hash of every input file's path and bytes, in a fixed order. */
export async function consoleSourceHash(): Promise<string> {
  const files = (await Promise.all(inputs.map((p) => filesUnder(join(repoDir, p))))).flat().sort();
  const hash = createHash("sha256");
  for (const file of files) {
    hash.update(relative(repoDir, file)).update("\0");
    hash.update(await readFile(file)).update("\0");
  }
  return hash.digest("hex");
}

interface BuildInfo {
  sources: string;
  builtAt: string;
}

async function builtFrom(dir: string): Promise<string | undefined> {
  try {
    return (JSON.parse(await readFile(join(dir, "build.json"), "utf8")) as BuildInfo).sources;
  } catch {
    return undefined;
  }
}

export interface ConsoleBuild {
  /** Whether this call built it (false: the bundle was current). */
  built: boolean;
  durationMs: number;
  dir: string;
}

/**
 * Builds the bundle when it is missing or stale. The build goes to a new folder that replaces
 * dist/ only once complete, so a panel serving meanwhile never sees half a bundle.
 */
export async function ensureConsoleBuilt(options: { force?: boolean; onBuild?: () => void } = {}): Promise<ConsoleBuild> {
  const started = performance.now();
  const sources = await consoleSourceHash();
  if (!options.force && (await builtFrom(consoleDist)) === sources) return { built: false, durationMs: 0, dir: consoleDist };
  options.onBuild?.();
  const staging = join(webDir, `.dist-${process.pid}-${Date.now()}`);
  await mkdir(staging, { recursive: true });
  try {
    await runVite(staging);
    await precompress(staging);
    await writeFile(join(staging, "build.json"), `${JSON.stringify({ sources, builtAt: new Date().toISOString() } satisfies BuildInfo, null, 2)}\n`);
    const old = `${consoleDist}.old-${process.pid}`;
    await rename(consoleDist, old).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
    await rename(staging, consoleDist);
    await rm(old, { recursive: true, force: true });
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    // Another process built the same sources at the same time: theirs is as good.
    if ((await builtFrom(consoleDist)) === sources) return { built: false, durationMs: performance.now() - started, dir: consoleDist };
    throw err;
  }
  return { built: true, durationMs: performance.now() - started, dir: consoleDist };
}

/** Writes a brotli (best) and a gzip copy beside each text file, so the panel sends them without compressing at run time. */
async function precompress(dir: string): Promise<void> {
  const files = (await filesUnder(dir)).filter((f) => /\.(js|css|html|svg|json)$/.test(f));
  for (const file of files) {
    const raw = await readFile(file);
    await writeFile(`${file}.br`, await brotli(raw, { params: { [zlib.BROTLI_PARAM_QUALITY]: 11 } }));
    await writeFile(`${file}.gz`, await gzip(raw, { level: 9 }));
  }
}

/** Runs `vite build` in a process of its own (its memory and threads go when it ends). */
async function runVite(outDir: string): Promise<void> {
  const require = createRequire(import.meta.url);
  const viteBin = join(dirname(require.resolve("vite/package.json")), "bin", "vite.js");
  const child = spawn(
    process.execPath,
    [viteBin, "build", "--config", join(webDir, "vite.config.ts"), "--outDir", outDir, "--emptyOutDir", "--logLevel", "warn"],
    {
      cwd: webDir,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number>((done) => child.on("close", (c) => done(c ?? 1)));
  if (code !== 0) throw new Error(`building the console failed (vite exited with ${code}):\n${output.trim().split("\n").slice(-30).join("\n")}`);
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const result = await ensureConsoleBuilt({ force: process.argv.includes("--force"), onBuild: () => process.stdout.write("Building the console…\n") });
  process.stdout.write(
    result.built ? `Console built into ${relative(process.cwd(), result.dir)} in ${(result.durationMs / 1000).toFixed(1)} s\n` : "The console is up to date.\n",
  );
}
