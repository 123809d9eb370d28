import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { applyAccounts } from "../../agent/apply/apply-accounts.js";
import type { DiscoveredInstance } from "../../agent/discovery/discover.js";
import { createResourceSampler } from "../../agent/discovery/resources.js";
import { buildSnapshot } from "../../agent/snapshot.js";
import { createUnloadedChanges } from "../../agent/unloaded-changes.js";
import { AccountOperation, ApplyAccountsSchema } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { makeTempDir } from "../helpers/cli.js";

test("changes written that OScam could not reload make the instance say 'restart needed', until OScam restarts", async () => {
  const dir = await makeTempDir("restart-needed");
  try {
    const configDir = join(dir.path, "conf");
    await mkdir(configDir, { recursive: true });
    // No [webif]: OScam reads oscam.user only at its next start.
    await writeFile(join(configDir, "oscam.conf"), "[global]\nnice = -1\n");
    await writeFile(join(configDir, "oscam.user"), "[account]\nuser = a\npwd = 1\n\n[account]\nuser = b\npwd = 2\n");
    const instance = (pid: number): DiscoveredInstance => ({
      name: "main",
      configDir,
      tempDir: dir.path,
      pidFile: join(dir.path, "oscam.pid"),
      sources: ["configured"],
      files: { conf: true, user: true, server: false },
      running: true,
      pid,
      webif: { enabled: false, host: "127.0.0.1", port: 0, ssl: false },
      problems: [],
    });
    const unloaded = createUnloadedChanges();
    const changes = create(ApplyAccountsSchema, {
      changes: [
        { operation: AccountOperation.DISABLE, user: "a" },
        { operation: AccountOperation.DISABLE, user: "b" },
      ],
    });
    const outcome = await applyAccounts(instance(100), changes, unloaded);
    assert.is(outcome.failureCode, "file_written_reload_failed");
    const sampler = createResourceSampler();
    const { snapshot } = await buildSnapshot(instance(100), sampler, unloaded);
    assert.ok(
      snapshot.problems.some((p) => p.startsWith("restart_needed: OScam has not loaded 2 changes")),
      snapshot.problems.join("; "),
    );
    // Restarted (a new pid): OScam read the file when it started.
    const after = await buildSnapshot(instance(200), sampler, unloaded);
    assert.not.ok(after.snapshot.problems.some((p) => p.startsWith("restart_needed")));
  } finally {
    await dir.remove();
  }
});

test.run();
