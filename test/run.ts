/**
 * `npm test`: starts one embedded PostgreSQL for the whole run (tests create a fresh database each
 * from it), runs uvu over test/ through tsx, stops PostgreSQL, and ends with `N passed, N failed`.
 * Extra arguments are a file pattern, e.g. `npm test -- config`.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { startEmbeddedPostgres } from "../services/lib/embedded-postgres.js";

const root = await mkdtemp(join(tmpdir(), "myosicam-test-"));
await chmod(root, 0o711);
const postgres = await startEmbeddedPostgres({ directory: join(root, "postgres"), port: 0, log: pino({ level: "silent" }) });

const pattern = process.argv[2] ? `${process.argv[2]}.*\\.test\\.ts$` : "\\.test\\.ts$";
const child = spawn(
  process.execPath,
  ["--import", "tsx", "node_modules/uvu/bin.js", "test", pattern, "-i", "helpers", "-i", "oscam-emulator"],
  {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, MYOSICAM_TEST_POSTGRES_URL: postgres.url("postgres"), FORCE_COLOR: "0" },
  },
);
let output = "";
child.stdout.on("data", (chunk: Buffer) => {
  output += chunk.toString();
  process.stdout.write(chunk);
});
const code: number = await new Promise((resolve) => child.on("close", (c) => resolve(c ?? 1)));
await postgres.stop();
await rm(root, { recursive: true, force: true });

const plain = output.replace(/\x1b\[[0-9;]*m/g, "");
const count = (label: string) => Number(/\s+(\d+)\s*$/.exec(plain.split("\n").find((l) => l.trim().startsWith(label)) ?? "")?.[1] ?? 0);
const total = count("Total:");
const passed = count("Passed:");
const skipped = count("Skipped:");
const failed = code !== 0 && total === passed ? Math.max(1, total - passed - skipped) : total - passed - skipped;
const reported = (plain.match(/^\s*FAIL /gm) ?? []).length;
if (failed > reported) {
  // uvu's reporter itself throws on an error that has a `details` array (every ConnectError), so
  // such a test ends the file without a FAIL line: catch RPC errors in tests and assert on them.
  process.stdout.write(`\n${failed - reported} test(s) ended without a report: probably a ConnectError escaped a test (uvu cannot print those); catch it and assert on its code\n`);
}
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}\n`);
process.exit(code !== 0 || failed > 0 || total === 0 ? 1 : 0);
