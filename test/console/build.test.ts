import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { consoleDist, consoleSourceHash, ensureConsoleBuilt } from "../../web/build.js";

const test = suite("the console's bundle is built when missing or made from other sources, and only then");

test("a current bundle is left alone; one built from other sources is rebuilt, with compressed copies", async () => {
  await ensureConsoleBuilt();
  const again = await ensureConsoleBuilt();
  assert.is(again.built, false, "nothing changed: no build");
  const info = join(consoleDist, "build.json");
  const recorded = JSON.parse(await readFile(info, "utf8")) as { sources: string };
  assert.is(recorded.sources, await consoleSourceHash());
  await writeFile(info, JSON.stringify({ ...recorded, sources: "0".repeat(64) }));
  const rebuilt = await ensureConsoleBuilt();
  assert.is(rebuilt.built, true, "the recorded sources differ: rebuilt");
  assert.is((JSON.parse(await readFile(info, "utf8")) as { sources: string }).sources, recorded.sources);
  const index = await readFile(join(consoleDist, "index.html"), "utf8");
  const entry = /src="\/(assets\/[^"]+\.js)"/.exec(index)?.[1];
  assert.ok(entry, index);
  await readFile(join(consoleDist, `${entry}.br`));
  await readFile(join(consoleDist, `${entry}.gz`));
});

test.run();
