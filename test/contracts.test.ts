import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { promisify } from "node:util";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { makeTempDir } from "./helpers/cli.js";

const run = promisify(execFile);
const repo = resolve(import.meta.dirname, "..");
const bin = join(repo, "node_modules/.bin");
// protoc-gen-es must be on PATH for `buf generate`.
const env = { ...process.env, PATH: `${bin}:${process.env.PATH}` };

async function buf(args: string[]) {
  try {
    return await run(join(bin, "buf"), args, { cwd: repo, env, maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`buf ${args.join(" ")} failed:\n${e.stdout ?? ""}${e.stderr ?? e.message}`);
  }
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

const test = suite("protobuf contracts");

test("buf lint finds nothing", async () => {
  await buf(["lint"]);
});

test("buf format would change nothing", async () => {
  await buf(["format", "-d", "--exit-code"]);
});

test("gen/ is exactly what buf generate produces from proto/", async () => {
  const out = await makeTempDir("gen");
  try {
    await buf(["generate", "--output", out.path]);
    const fresh = join(out.path, "gen");
    const committed = join(repo, "gen");
    assert.equal(await listFiles(committed), await listFiles(fresh), "same files");
    for (const file of await listFiles(fresh)) {
      const same = (await readFile(join(fresh, file), "utf8")) === (await readFile(join(committed, file), "utf8"));
      assert.ok(same, `gen/${file} is stale: run \`npm run generate\` and commit the result`);
    }
  } finally {
    await out.remove();
  }
});

test("no breaking change against main", async () => {
  if (!existsSync(join(repo, ".git"))) {
    console.warn("  (not a git checkout: the breaking-change check needs main's history)");
    return;
  }
  const branches = await run("git", ["branch", "--list", "--all", "main", "origin/main"], { cwd: repo });
  const ref = branches.stdout.includes("origin/main") && !/^\*?\s*main$/m.test(branches.stdout) ? "ref=origin/main" : "branch=main";
  await buf(["breaking", "--against", `.git#${ref}`]);
});

test.run();
