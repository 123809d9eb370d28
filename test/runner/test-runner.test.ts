import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ensureSystemPackages } from "../system-packages.js";

const run = promisify(execFile);

test("a test file that crashes is reported as that file failing, and the run goes on", async () => {
  const dir = join(".scratch", `runner-${process.pid}`);
  await mkdir(dir, { recursive: true });
  const passing = (name: string) => `import { test } from "uvu";\ntest("${name}", () => {});\ntest.run();\n`;
  await writeFile(join(dir, "a.test.ts"), passing("first"));
  // An unhandled 'error' event, as a missing sshd once caused: the process dies mid-file.
  await writeFile(
    join(dir, "b.test.ts"),
    `import { test } from "uvu";\nimport { EventEmitter } from "node:events";\ntest("crashes", () => new Promise(() => { setImmediate(() => new EventEmitter().emit("error", new Error("spawn /usr/sbin/sshd ENOENT"))); }));\ntest.run();\n`,
  );
  await writeFile(join(dir, "c.test.ts"), passing("last"));
  try {
    const result = await run(process.execPath, ["--import", "tsx", "test/run.ts"], { env: { ...process.env, MYOSICAM_TEST_ROOT: dir } }).catch(
      (err: { stdout: string; code: number }) => err,
    );
    const stdout = (result as { stdout: string }).stdout;
    assert.match(stdout, /^2 passed, 1 failed$/m);
    assert.match(stdout, /b\.test\.ts: 1 failed; the file did not finish:[\s\S]*spawn \/usr\/sbin\/sshd ENOENT/);
    assert.is((result as { code?: number }).code, 1);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a file whose setup (a before hook) fails is reported as such, not as tests failing without a word", async () => {
  const dir = join(".scratch", `runner-before-${process.pid}`);
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, "setup.test.ts"),
    `import { test } from "uvu";\ntest.before(() => { throw new Error("no database"); });\ntest("one", () => {});\ntest("two", () => {});\ntest.run();\n`,
  );
  try {
    const result = await run(process.execPath, ["--import", "tsx", "test/run.ts"], { env: { ...process.env, MYOSICAM_TEST_ROOT: dir } }).catch(
      (err: { stdout: string; code: number }) => err,
    );
    const stdout = (result as { stdout: string }).stdout;
    assert.match(stdout, /^0 passed, 2 failed$/m);
    assert.match(stdout, /setup\.test\.ts: 2 failed; the file did not finish:\s+its setup \(a `before` hook\) failed/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("each file's time is printed with the slowest at the end, and a file whose process outlives its tests is named with how long", async () => {
  const dir = join(".scratch", `runner-linger-${process.pid}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "quick.test.ts"), `import { test } from "uvu";\ntest("quick", () => {});\ntest.run();\n`);
  // A timer left armed after the last test keeps the process alive 2 s longer.
  await writeFile(join(dir, "lingers.test.ts"), `import { test } from "uvu";\ntest("leaves a timer", () => { setTimeout(() => {}, 2000); });\ntest.run();\n`);
  try {
    const { stdout } = await run(process.execPath, ["--import", "tsx", "test/run.ts"], {
      env: { ...process.env, MYOSICAM_TEST_ROOT: dir, MYOSICAM_TEST_LINGER_SECONDS: "1" },
    });
    assert.match(stdout, /^ {2}quick\.test\.ts: \d+\.\d s$/m);
    assert.match(stdout, /^slowest files: lingers\.test\.ts \d+ s, quick\.test\.ts \d+ s$/m);
    const lingered = Number(/lingers\.test\.ts: its process stayed alive (\d+\.\d) s after its last test/.exec(stdout)?.[1]);
    assert.ok(lingered >= 1.5, `the 2 s timer's wait is counted (${lingered} s)`);
    assert.match(stdout, /^lingered after their last test: lingers\.test\.ts \d+ s$/m);
    assert.not.match(stdout, /quick\.test\.ts: its process stayed alive/);
    assert.match(stdout, /^2 passed, 0 failed$/m);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("files run two at a time, and a file that says it runs alone has nothing beside it", async () => {
  const dir = join(".scratch", `runner-jobs-${process.pid}`);
  await mkdir(dir, { recursive: true });
  const marks = resolve(dir, "marks");
  await mkdir(marks);
  // Each file marks when it starts and ends. The paired files pass only if each sees the other
  // start while it runs (bounded: one after the other, the first gives up after 10 s).
  const prelude = (name: string) =>
    `import { suite } from "uvu";\nconst test = suite("file ${name}");\nimport { existsSync, writeFileSync } from "node:fs";\nimport { setTimeout as sleep } from "node:timers/promises";\n` +
    `const mark = (what: string) => writeFileSync(${JSON.stringify(marks)} + "/${name}." + what, "");\n` +
    `const seen = (file: string) => existsSync(${JSON.stringify(marks)} + "/" + file);\n` +
    `const running = (other: string) => seen(other + ".started") && !seen(other + ".ended");\n`;
  const paired = (name: string, other: string) =>
    `${prelude(name)}test("${name} runs beside ${other}", async () => {\n  mark("started");\n  if (running("alone")) throw new Error("started beside the file that runs alone");\n` +
    `  for (let i = 0; i < 500 && !seen("${other}.started"); i++) await sleep(20);\n  mark("ended");\n  if (!seen("${other}.started")) throw new Error("${other} did not run at the same time");\n});\ntest.run();\n`;
  await writeFile(join(dir, "a.test.ts"), paired("a", "b"));
  await writeFile(join(dir, "b.test.ts"), paired("b", "a"));
  await writeFile(
    join(dir, "alone.test.ts"),
    `// npm test runs this file alone: it checks that nothing runs beside it.\n${prelude("alone")}test("nothing beside it", () => {\n  mark("started");\n  const beside = ["a", "b"].filter(running);\n  mark("ended");\n  if (beside.length > 0) throw new Error("ran beside " + beside.join(", "));\n});\ntest.run();\n`,
  );
  try {
    const result = await run(process.execPath, ["--import", "tsx", "test/run.ts"], {
      env: { ...process.env, MYOSICAM_TEST_ROOT: dir, MYOSICAM_TEST_JOBS: "2" },
    }).catch((err: { stdout: string }) => err);
    const stdout = (result as { stdout: string }).stdout;
    assert.match(stdout, /^3 passed, 0 failed$/m);
    // A file's output comes whole: from its suite's name to its time, nothing of the other file.
    const whole = /file a\b[\s\S]*?a\.test\.ts: \d+\.\d s/.exec(stdout)?.[0] ?? "";
    assert.match(whole, /Total: +1/);
    assert.not.match(whole, /file b\b/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a file still running at its deadline is stopped with everything it started, and fails with its name and what it waited on", async () => {
  const dir = join(".scratch", `runner-deadline-${process.pid}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "quick.test.ts"), `import { test } from "uvu";\ntest("quick", () => {});\ntest.run();\n`);
  // It starts a child process that would outlive it, prints its pid, then waits on a server nothing connects to.
  await writeFile(
    join(dir, "hangs.test.ts"),
    `import { test } from "uvu";\nimport { spawn } from "node:child_process";\nimport { createServer } from "node:net";\n` +
      `test("never ends", () => new Promise(() => {\n  const child = spawn("sleep", ["600"], { stdio: "ignore" });\n  console.log("child " + child.pid);\n` +
      `  createServer().listen(0, "127.0.0.1");\n}));\ntest.run();\n`,
  );
  try {
    const result = await run(process.execPath, ["--import", "tsx", "test/run.ts"], {
      env: { ...process.env, MYOSICAM_TEST_ROOT: dir, MYOSICAM_TEST_FILE_SECONDS: "4" },
    }).catch((err: { stdout: string; code: number }) => err);
    const stdout = (result as { stdout: string }).stdout;
    assert.is((result as { code?: number }).code, 1);
    assert.match(stdout, /^1 passed, 1 failed$/m);
    assert.match(stdout, /^ {2}hangs\.test\.ts: still running after 4 s; stopping it$/m);
    assert.match(stdout, /hangs\.test\.ts: 1 failed; the file did not finish:\s+it did not finish within 4 s \(MYOSICAM_TEST_FILE_SECONDS\) and was stopped/);
    const child = Number(/^child (\d+)$/m.exec(stdout)?.[1]);
    assert.match(stdout, new RegExp(`processes under it:[\\s\\S]*?\\b${child} \\(under \\d+\\): sleep 600`));
    assert.match(stdout, /what it was waiting on:[\s\S]*tcp \S+:\d+ → -/);
    // Killed, it is gone or (until something reaps it) a zombie.
    const state = existsSync(`/proc/${child}`) ? /\) (\S)/.exec(readFileSync(`/proc/${child}/stat`, "utf8"))?.[1] : "gone";
    assert.ok(state === "gone" || state === "Z", `the child it started was killed with it (state ${state})`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("missing system tools stop the run with one line naming the packages and the command to install them", async () => {
  const line = await ensureSystemPackages(process.stdout, [{ command: "myosicam-no-such-tool", debianPackage: "myosicam-no-such-package" }], {
    install: false,
  });
  assert.is(
    line,
    "the tests need these Debian packages, which are missing: myosicam-no-such-package; install them with: sudo apt-get install myosicam-no-such-package",
  );
  assert.is(await ensureSystemPackages(process.stdout, [{ command: "sh", debianPackage: "dash" }], { install: false }), undefined);
});

test.run();
