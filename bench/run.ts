/**
 * `npm run bench [-- name [flags…]]`: runs bench/<name>.bench.ts (all of them without a name), one
 * after another; flags after the name go to the benchmark (e.g. `scale --agents 1000,5000`).
 */
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { owned } from "./lib/owned-children.js";

const [filter, ...flags] = process.argv.slice(2);
const files = readdirSync(import.meta.dirname).filter((f) => f.endsWith(".bench.ts") && (!filter || f.startsWith(filter)));
if (files.length === 0) {
  console.error(`no benchmark matches ${filter}`);
  process.exit(1);
}
let failed = false;
for (const file of files) {
  console.log(`== ${file}`);
  // Not spawnSync: a signal to this process must reach the benchmark (it ends what it started).
  const child = owned(spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, file), ...flags], { stdio: "inherit" }));
  const status = await new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  failed ||= status !== 0;
}
process.exit(failed ? 1 : 0);
