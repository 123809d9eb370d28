import { spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { build } from "esbuild";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { makeTempDir } from "../helpers/cli.js";

const test = suite("replacing a config file survives SIGKILL at any moment");

let dir: Awaited<ReturnType<typeof makeTempDir>>;
let child: string;
// Two versions that differ throughout, large enough that a write takes a while.
const oldText = "# old\n" + Array.from({ length: 3000 }, (_, i) => `[account]\nuser = old${i}\npwd = o${i}\n`).join("\n");
const newText = "# new\n" + Array.from({ length: 3000 }, (_, i) => `[account]\nuser = new${i}\npwd = n${i}\n`).join("\n");

test.before(async () => {
  dir = await makeTempDir("atomic_apply");
  // The real replaceConfigFile, bundled so each child starts in milliseconds (no TypeScript loader).
  child = join(dir.path, "writer.cjs");
  await writeFile(
    join(dir.path, "writer.ts"),
    `import { replaceConfigFile } from ${JSON.stringify(resolve(import.meta.dirname, "../../agent/apply/config-file.ts"))};
     const [file, text] = [process.argv[2]!, process.argv[3]!];
     process.stdout.write("go\\n");
     (async () => { for (;;) { await replaceConfigFile(file, Buffer.from(text)); process.stdout.write("w"); } })();`,
  );
  await build({ entryPoints: [join(dir.path, "writer.ts")], bundle: true, platform: "node", format: "cjs", outfile: child, logLevel: "error" });
});
test.after(async () => {
  await dir.remove();
});

test("killed 200 times while writing: the file is always the old or the new version, byte for byte", async () => {
  const file = join(dir.path, "oscam.user");
  await writeFile(file, oldText);
  let sawNew = 0;
  for (let i = 0; i < 200; i++) {
    const target = i % 2 === 0 ? newText : oldText;
    const proc = spawn(process.execPath, [child, file, target], { stdio: ["ignore", "pipe", "inherit"] });
    // Every tenth child writes one whole file first (however slow the machine): some kills then
    // fall in a write that replaces a complete one, and the run cannot pass without any write done.
    const firstWrite = i % 10 === 0;
    let output = "";
    await new Promise<void>((r) => {
      const seen = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes("go\n") && (!firstWrite || output.includes("w"))) {
          proc.stdout!.off("data", seen);
          r();
        }
      };
      proc.stdout!.on("data", seen);
    });
    proc.stdout!.resume();
    // Kill at a random point of its write loop.
    await new Promise((r) => setTimeout(r, randomInt(0, 15)));
    proc.kill("SIGKILL");
    await new Promise((r) => proc.once("exit", r));
    const now = await readFile(file, "utf8");
    assert.ok(now === oldText || now === newText, `after kill ${i + 1} the file is neither version (${now.length} bytes)`);
    if (now === newText) sawNew++;
  }
  assert.ok(sawNew > 0, "some writes completed");
  // The next complete write cleans up after the killed ones: no temp file left, 10 backups kept.
  const { replaceConfigFile } = await import("../../agent/apply/config-file.js");
  await replaceConfigFile(file, Buffer.from(newText));
  assert.equal(
    (await readdir(dir.path)).filter((f) => f.endsWith(".tmp")),
    [],
  );
  assert.is((await readdir(join(dir.path, ".myosicam-backups"))).length, 10);
});

test.run();
