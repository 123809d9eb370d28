/**
 * Parse + snapshot of a 10,000-account oscam.user, run by oscam.bench.ts in a process of its own
 * that loads only the agent's code, as the agent does (a process that also holds the panel's
 * modules measures its larger heap, not the agent).
 *
 *   node --import tsx bench/lib/agent-snapshot.ts <config dir>
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createResourceSampler } from "../../agent/discovery/resources.js";
import { parseOscamFile } from "../../agent/oscam/document.js";
import { readUserFile } from "../../agent/oscam/user-file.js";
import { buildSnapshot } from "../../agent/snapshot.js";
import { timed } from "./timed.js";

const dir = process.argv[2]!;
const sampler = createResourceSampler();
const instance = {
  name: "big",
  configDir: dir,
  tempDir: join(dir, "tmp"),
  pidFile: join(dir, "none.pid"),
  sources: ["configured" as const],
  files: { conf: true, user: true, server: true },
  running: false,
  webif: { enabled: true, host: "127.0.0.1", port: 8888, ssl: false },
  problems: [],
};
const parse = await timed(9, async () => readUserFile(parseOscamFile(await readFile(join(dir, "oscam.user")), "oscam.user")).accounts.length);
const snap = await timed(9, () => buildSnapshot(instance, sampler));
console.log(`10,000 accounts: parse ${parse.ms.toFixed(1)} ms, parse + snapshot ${snap.ms.toFixed(1)} ms (target ≤ 150 ms)`);
