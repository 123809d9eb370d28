/**
 * `npm test`: checks that the system tools the tests need are there (installing them with apt when
 * it runs as root, see test/system-packages.txt), starts one embedded PostgreSQL for the whole run
 * (tests create a fresh database each from it), runs every test file in a process of its own, stops
 * PostgreSQL, and ends with `N passed, N failed`. A file that crashes counts as that file failing,
 * with its error, and the run goes on. Extra arguments are a file pattern, e.g. `npm test -- config`.
 * Each file's wall time is printed, the slowest at the end (CI has 20 minutes), and a file whose
 * process stays alive well after its last test (a timer or socket left behind; one once cost CI
 * five minutes) is named with how long it lingered (MYOSICAM_TEST_LINGER_SECONDS, default 10).
 * A file still running after MYOSICAM_TEST_FILE_SECONDS (default 360; four times that with
 * FAULTS_LONG=1) is stopped with everything it started and fails with its name and what it was
 * waiting on (test/stuck-file.ts): a hung file once held CI until it was killed from outside.
 *
 * Files run two at a time (MYOSICAM_TEST_JOBS), each one's output printed whole when it ends: most
 * files spend their time waiting on processes, sockets and PostgreSQL, so two share the machine's
 * two cores well. A file that says `// npm test runs this file alone: <why>` in a line of its own
 * (it measures load, or holds a whole fleet) runs with nothing beside it, its output as it comes.
 */
import { spawn } from "node:child_process";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join, relative } from "node:path";
import pino from "pino";
import { startEmbeddedPostgres } from "../services/lib/embedded-postgres.js";
import { describeAndStop, reportFlags } from "./stuck-file.js";
import { ensureSystemPackages } from "./system-packages.js";

const missing = await ensureSystemPackages(process.stdout);
if (missing) {
  process.stdout.write(`${missing}\n\n0 passed, 1 failed\n`);
  process.exit(1);
}

// Grouped, so that a pattern with alternatives (`a|b`) still has to name a test file.
const pattern = new RegExp(process.argv[2] ? `(?:${process.argv[2]}).*\\.test\\.ts$` : "\\.test\\.ts$");
// MYOSICAM_TEST_ROOT: another folder of tests (the runner's own test uses it).
const testRoot = process.env.MYOSICAM_TEST_ROOT ?? "test";
const files = (await readdir(testRoot, { recursive: true }))
  .map((f) => join(testRoot, f))
  .filter((f) => pattern.test(f) && !f.startsWith(join(testRoot, "helpers")) && !f.startsWith(join(testRoot, "oscam-emulator")))
  .sort();

const root = await mkdtemp(join(tmpdir(), "myosicam-test-"));
await chmod(root, 0o711);
// Files running side by side each open pools of their own (10 connections per panel).
const postgres = await startEmbeddedPostgres({ directory: join(root, "postgres"), port: 0, log: pino({ level: "silent" }), maxConnections: 400 });

const lingerLimitSeconds = Number(process.env.MYOSICAM_TEST_LINGER_SECONDS ?? 10);
// The slowest file takes about 3 minutes on CI's two cores; the fault suites run 4 times longer with FAULTS_LONG=1.
const fileLimitSeconds = Number(process.env.MYOSICAM_TEST_FILE_SECONDS) || (process.env.FAULTS_LONG === "1" ? 4 : 1) * 360;
const reportDirectory = join(root, "reports");
await mkdir(reportDirectory);
const jobs = Math.max(1, Number(process.env.MYOSICAM_TEST_JOBS) || Math.min(2, availableParallelism()));
const runsAlone = /^\/\/ npm test runs this file alone\b/m;

interface FileResult {
  file: string;
  passed: number;
  failed: number;
  skipped: number;
  /** Wall time of its process, and the part of it after uvu's summary (seconds). */
  seconds: number;
  lingeredSeconds: number;
  /** Why the file failed as a whole (a crash, no summary), if it did. */
  crash?: string;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: it removes terminal colour codes
const plain = (text: string) => text.replace(/\x1b\[[0-9;]*m/g, "");
const count = (output: string, label: string) => {
  const line = output.split("\n").find((l) => l.trim().startsWith(label));
  return line ? Number(/(\d+)\s*$/.exec(line)?.[1] ?? 0) : undefined;
};

/** Runs one test file; `live` prints its output as it comes, otherwise whole once it ends. */
async function runFile(file: string, live: boolean): Promise<FileResult> {
  const started = performance.now();
  let summarisedAt: number | undefined;
  const child = spawn(process.execPath, [...reportFlags(reportDirectory), "--import", "tsx", file], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, MYOSICAM_TEST_POSTGRES_URL: postgres.url("postgres"), FORCE_COLOR: "0" },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    const text = chunk.toString();
    // Only the new text (and what a chunk boundary may have split) is searched for the summary.
    if (summarisedAt === undefined && (stdout.slice(-16) + text).includes("Duration:")) summarisedAt = performance.now();
    stdout += text;
    if (live) process.stdout.write(chunk);
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
    if (live) process.stderr.write(chunk);
  });
  let stuck: Promise<string> | undefined;
  const deadline = setTimeout(() => {
    process.stdout.write(`  ${relative(testRoot, file)}: still running after ${fileLimitSeconds} s; stopping it\n`);
    stuck = describeAndStop(child.pid!, reportDirectory);
  }, fileLimitSeconds * 1000);
  const code: number = await new Promise((resolve) => child.on("close", (c, signal) => resolve(c ?? (signal ? 128 : 1))));
  clearTimeout(deadline);
  const stoppedBecause = stuck && `it did not finish within ${fileLimitSeconds} s (MYOSICAM_TEST_FILE_SECONDS) and was stopped; ${await stuck}`;
  const ended = performance.now();
  if (!live) {
    process.stdout.write(stdout);
    process.stderr.write(stderr);
  }
  const timing = { seconds: (ended - started) / 1000, lingeredSeconds: summarisedAt === undefined ? 0 : (ended - summarisedAt) / 1000 };
  process.stdout.write(`  ${relative(testRoot, file)}: ${timing.seconds.toFixed(1)} s\n`);
  if (timing.lingeredSeconds > lingerLimitSeconds) {
    process.stdout.write(
      `  ${relative(testRoot, file)}: its process stayed alive ${timing.lingeredSeconds.toFixed(1)} s after its last test (a timer or socket left behind)\n`,
    );
  }
  const out = plain(stdout);
  const total = count(out, "Total:");
  const passed = count(out, "Passed:") ?? 0;
  const skipped = count(out, "Skipped:") ?? 0;
  if (stoppedBecause) {
    const failed = Math.max(1, (total ?? passed + 1) - passed);
    return { file, passed, failed, skipped, ...timing, crash: stoppedBecause };
  }
  if (total === undefined || code !== 0) {
    // uvu's reporter itself throws on an error that has a `details` array (every ConnectError), so
    // such a test ends the file without a FAIL line; a crash ends it without a summary.
    const reason = plain(stderr).trim().split("\n").filter(Boolean).slice(-8).join("\n") || `exited with code ${code}`;
    const failed = Math.max(1, (total ?? passed + 1) - passed);
    return { file, passed, failed, skipped, ...timing, crash: total === undefined ? reason : code !== 0 && total === passed ? reason : undefined };
  }
  // A `before` hook that throws fails every test of the file, and uvu prints neither a FAIL line
  // nor the error (its runner returns from a `finally`).
  if (total > 0 && passed === 0 && !/^\s*FAIL\b/m.test(out)) {
    return {
      file,
      passed,
      failed: total,
      skipped,
      ...timing,
      crash: "its setup (a `before` hook) failed; uvu does not print why, see what the file wrote above",
    };
  }
  // uvu counts skipped tests apart from Total.
  return { file, passed, failed: total - passed, skipped, ...timing };
}

const alone: string[] = [];
const shared: string[] = [];
for (const file of files) (runsAlone.test(await readFile(file, "utf8")) ? alone : shared).push(file);
const results: FileResult[] = [];
for (const file of alone) results.push(await runFile(file, true));
const next = shared.values();
await Promise.all(
  Array.from({ length: jobs }, async () => {
    for (const file of next) results.push(await runFile(file, jobs === 1));
  }),
);
await postgres.stop();
await rm(root, { recursive: true, force: true });

const sum = (key: "passed" | "failed" | "skipped") => results.reduce((n, r) => n + r[key], 0);
const failing = results.filter((r) => r.failed > 0);
if (failing.length > 0) {
  process.stdout.write("\nFailed files:\n");
  for (const r of failing) {
    process.stdout.write(
      `  ${relative(testRoot, r.file)}: ${r.failed} failed${r.crash ? `; the file did not finish:\n      ${r.crash.replace(/\n/g, "\n      ")}` : ""}\n`,
    );
  }
}
const slowest = [...results].sort((a, b) => b.seconds - a.seconds).slice(0, 5);
process.stdout.write(`\nslowest files: ${slowest.map((r) => `${relative(testRoot, r.file)} ${r.seconds.toFixed(0)} s`).join(", ")}\n`);
const lingering = results.filter((r) => r.lingeredSeconds > lingerLimitSeconds);
if (lingering.length > 0) {
  process.stdout.write(
    `lingered after their last test: ${lingering.map((r) => `${relative(testRoot, r.file)} ${r.lingeredSeconds.toFixed(0)} s`).join(", ")}\n`,
  );
}
const passed = sum("passed");
const failed = sum("failed");
const skipped = sum("skipped");
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}\n`);
process.exit(failed > 0 || passed + skipped === 0 ? 1 : 0);
