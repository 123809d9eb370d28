import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { createResourceSampler, directoryMb } from "../../agent/discovery/resources.js";

const test = suite("resources from /proc: CPU over an interval, RSS, disk, host figures");

test("a process burning CPU shows CPU %, its RSS, and the size of its directories", async () => {
  // Burns CPU for 300 ms of its own CPU time, then idles until killed.
  const child = spawn(
    process.execPath,
    ["-e", "const t=process.cpuUsage();while((process.cpuUsage(t).user)<300000){} setInterval(()=>{},1000); process.stdout.write('done')"],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  try {
    let fakeNow = 0;
    const sampler = createResourceSampler("/proc", () => fakeNow);
    const dirs = [resolve(import.meta.dirname, "../fixtures/oscam/main")];
    const first = await sampler.instance(child.pid, dirs);
    assert.is(first.cpuPercent, 0, "no interval yet");
    await new Promise<void>((r) => child.stdout!.once("data", () => r()));
    // The clock the sampler sees moves by exactly one second between the samples.
    fakeNow = 1000;
    const second = await sampler.instance(child.pid, dirs);
    assert.ok(second.cpuPercent > 10, `CPU ${second.cpuPercent} %`);
    assert.ok(second.rssMb > 5, `RSS ${second.rssMb} MB`);
    assert.ok(second.diskMb > 0.005 && second.diskMb < 1, `disk ${second.diskMb} MB`);
  } finally {
    child.kill("SIGKILL");
  }
});

test("host figures: memory, disk, load; a missing process or directory reads as zero", async () => {
  const sampler = createResourceSampler();
  const host = await sampler.host();
  assert.ok(host.memoryTotalMb > host.memoryUsedMb && host.memoryUsedMb > 0);
  assert.ok(host.diskUsedMb > 0);
  assert.ok(host.load.one >= 0);
  assert.equal(await sampler.instance(2 ** 22 + 7, ["/nonexistent"]), { cpuPercent: 0, rssMb: 0, diskMb: 0 });
  assert.is(await directoryMb("/nonexistent"), 0);
});

test.run();
