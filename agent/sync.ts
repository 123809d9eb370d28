import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { findOscamProcesses, type OscamProcess } from "./discovery/processes.js";
import { currentRuntime } from "./discovery/runtime.js";
import { watch, type FSWatcher } from "node:fs";
import type { Client } from "@connectrpc/connect";
import type { AgentService } from "../gen/myosicam/agent/v1/agent_pb.js";
import type { Account, InstanceSnapshot } from "../gen/myosicam/agent/v1/snapshot_pb.js";
import type { Logger } from "../services/lib/log.js";
import { discoverInstances, type DiscoveryOptions } from "./discovery/discover.js";
import { createResourceSampler } from "./discovery/resources.js";
import { buildSnapshot, snapshotAfterOwnChange } from "./snapshot.js";
import type { UnloadedChanges } from "./unloaded-changes.js";

/** Quiet time after a config file changes before the agent syncs (editors write in bursts). */
export const syncDebounceMs = 2000;

const watchedFiles = new Set(["oscam.conf", "oscam.user", "oscam.server"]);

/**
 * Keeps the panel's picture of this host's OScam instances current: a sync on start, after any
 * change of an instance's config files (debounced), on request, and some time after a change the
 * agent made and reported when the panel did not take the instance's new hash from its result
 * (`later`). A snapshot is sent only when its content hash differs from what was last sent, or
 * when the panel asks for it (`resend`). A config file's change that changes nothing the panel
 * holds (the agent's own write of a change the panel took, a file saved as it was) sends nothing.
 * Syncs never overlap; a trigger during a sync runs one more afterwards.
 */
export function createSyncer(options: { client: () => Client<typeof AgentService>; discovery: DiscoveryOptions; log: Logger; unloaded?: UnloadedChanges }) {
  const sampler = createResourceSampler(options.discovery.procRoot);
  /** The snapshot last sent of each instance (or, after a change the agent made, what the panel holds once it stored the result). */
  const lastSent = new Map<string, InstanceSnapshot>();
  const watchers = new Map<string, FSWatcher>();
  let running: Promise<void> | undefined;
  /** The pass under way (or the last one): what `settled` waits for. */
  let pass: Promise<void> = Promise.resolve();
  let again = false;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  /** Ends a sync under way when the agent stops (it may otherwise wait up to its 120 s deadline). */
  const stopping = new AbortController();
  /** The instances of the last successful sync: what heartbeats take readings of. */
  let synced: Array<{ name: string; pid?: number; dirs: string[]; pidFile: string; configDir: string }> = [];

  /** The instance names of the last sync the panel took. */
  let lastPresent = "";

  /** One pass: `always` sends the hashes even when nothing changed (a request, a retry, a resync after a change). */
  const syncOnce = async (always: boolean) => {
    const instances = await discoverInstances({ ...options.discovery, probeWebif: options.discovery.probeWebif ?? true });
    const built = [];
    for (const instance of instances) built.push(await buildSnapshot(instance, sampler, options.unloaded));
    for (const b of built)
      for (const problem of b.problems) options.log.warn({ instance: b.snapshot.ref!.name, problem }, "part of an instance could not be read");
    const present = built.map((b) => ({ name: b.snapshot.ref!.name, contentHash: b.snapshot.ref!.contentHash }));
    const changed = built.filter((b) => lastSent.get(b.snapshot.ref!.name)?.ref?.contentHash !== b.snapshot.ref!.contentHash).map((b) => b.snapshot);
    const names = present
      .map((p) => p.name)
      .sort()
      .join("\u0000");
    if (!always && changed.length === 0 && names === lastPresent) {
      remember(instances);
      options.log.debug({ instances: present.length }, "nothing changed that the panel does not hold: no sync sent");
      return;
    }
    const host = await sampler.host();
    const res = await options.client().sync({ present, snapshots: changed, host }, { timeoutMs: 120_000, signal: stopping.signal });
    for (const s of changed) lastSent.set(s.ref!.name, s);
    if (res.resend.length > 0) {
      const resend = built.filter((b) => res.resend.includes(b.snapshot.ref!.name)).map((b) => b.snapshot);
      await options.client().sync({ present, snapshots: resend }, { timeoutMs: 120_000, signal: stopping.signal });
      for (const s of resend) lastSent.set(s.ref!.name, s);
    }
    lastPresent = names;
    remember(instances);
    options.log.info({ instances: present.length, sent: changed.length + res.resend.length }, "synced with the panel");
  };

  /** The instances a pass found: what heartbeats take readings of, and whose config dirs are watched. */
  const remember = (instances: Awaited<ReturnType<typeof discoverInstances>>) => {
    synced = instances.map((i) => ({
      name: i.name,
      pid: i.running ? i.pid : undefined,
      dirs: [i.configDir, i.tempDir],
      pidFile: i.pidFile,
      configDir: i.configDir,
    }));
    watchConfigDirs(instances.map((i) => i.configDir));
  };

  const watchConfigDirs = (dirs: string[]) => {
    // A sync that was under way when the agent stopped ends after `stop`: it must not start
    // watching again (an open watcher keeps the stopped process alive for good).
    if (stopped) return;
    for (const dir of dirs) {
      if (watchers.has(dir)) continue;
      try {
        const watcher = watch(dir, (_event, file) => {
          if (file && watchedFiles.has(String(file))) trigger(syncDebounceMs);
        });
        watcher.on("error", () => watchers.delete(dir));
        watchers.set(dir, watcher);
      } catch (err) {
        options.log.warn({ dir, err: (err as Error).message }, "cannot watch this config dir; changes are picked up at the next sync");
      }
    }
  };

  /** Whether the next pass sends the hashes even when nothing changed. */
  let alwaysNext = false;
  const run = (always: boolean) => {
    if (always) alwaysNext = true;
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          const always = alwaysNext;
          alwaysNext = false;
          pass = syncOnce(always);
          await pass;
        } while (again && !stopped);
      } catch (err) {
        if (stopped) return;
        options.log.warn({ err: (err as Error).message }, "sync failed; it is retried with the next heartbeat");
        failed = true;
      } finally {
        running = undefined;
      }
    })();
    return running;
  };
  let failed = false;

  /** No sync is started by a trigger before this time (epoch ms): the hold `later` asks for. */
  let heldUntil = 0;

  /** Whether the pass the timer starts sends the hashes even when nothing changed. */
  let alwaysOnTimer = false;
  /** Asks for a sync after `delayMs`, or when a hold ends (later triggers within the delay are folded into it). */
  const trigger = (delayMs = 0, always = false) => {
    if (stopped) return;
    if (always) alwaysOnTimer = true;
    if (timer) clearTimeout(timer);
    timer = setTimeout(
      () => {
        timer = undefined;
        const sendAnyway = alwaysOnTimer;
        alwaysOnTimer = false;
        void run(sendAnyway);
      },
      Math.max(delayMs, heldUntil - Date.now()),
    );
    timer.unref();
  };

  return {
    /** Syncs now (the first sync after start, or a `resync`); resolves when it finished. */
    syncNow: () => run(true),
    /**
     * Resolves when the pass under way now (if any) has ended, however it ended: a snapshot it
     * read before a change the agent just made then reaches the panel before that change's result.
     */
    settled: () =>
      pass.then(
        () => {},
        () => {},
      ),
    trigger,
    /**
     * A sync in `delayMs` and, meanwhile, none started by a trigger (a config file's change is
     * folded into it): what follows a change the agent made itself and whose result already showed
     * the panel each account as it now is, when the panel did not take the instance's new hash, so
     * that the snapshots of a fleet-wide change do not all reach the panel with its results. It
     * sends the hashes even if nothing changed. A hold under way is kept, not extended: changes
     * arriving one after the other cannot put the sync off for good.
     */
    later(delayMs: number) {
      if (heldUntil <= Date.now()) heldUntil = Date.now() + delayMs;
      trigger(0, true);
    },
    /**
     * The panel did not take the hash `ownChange` worked out for this instance: the next sync sends
     * its snapshot whatever its hash.
     */
    forget(name: string) {
      lastSent.delete(name);
    },
    /**
     * What an account change the agent just made did to an instance's content hash, for its result
     * (ReportResultRequest.content_hash): when oscam.user, read again, differs from the snapshot
     * last sent only in `changed` (each applied change's user and the account its result carries,
     * undefined when deleted). The instance's snapshot is then taken to be the panel's too: no sync
     * follows when the panel took the hash, and a later pass sends nothing unless something else
     * changed; when the panel did not take it (`forget`), the next sync sends the snapshot. Call it
     * once a sync under way has settled.
     */
    async ownChange(
      instance: { name: string; configDir: string },
      changed: ReadonlyMap<string, Account | undefined>,
    ): Promise<{ before: string; after: string } | undefined> {
      const last = lastSent.get(instance.name);
      if (!last) return undefined;
      const userFile = await readFile(join(instance.configDir, "oscam.user")).catch(() => undefined);
      const next = userFile && snapshotAfterOwnChange(last, userFile, changed);
      if (!next) return undefined;
      lastSent.set(instance.name, next);
      return { before: last.ref!.contentHash, after: next.ref!.contentHash };
    },
    /**
     * Resource readings for a heartbeat: the host's, and each instance of the last sync (CPU %
     * since the previous reading). A process that ended reads as zero until the next sync.
     */
    async readings() {
      const instances = [];
      const procRoot = options.discovery.procRoot ?? "/proc";
      // One scan of /proc for all instances, and only if a pid file does not tell.
      let scanned: Promise<OscamProcess[]> | undefined;
      const processes = () => (scanned ??= findOscamProcesses(procRoot));
      for (const i of synced) {
        // Runtime first: a restarted OScam (new pid) is sampled under its new pid.
        const now = await currentRuntime(i, procRoot, processes);
        i.pid = now.pid;
        instances.push({
          name: i.name,
          resources: await sampler.instance(now.pid, i.dirs),
          runtime: { running: now.running, pid: now.pid ?? 0, uptimeSeconds: BigInt(now.uptimeSeconds ?? 0) },
        });
      }
      return { host: await sampler.host(), instances };
    },
    /** Whether the last sync failed (the caller retries with its next heartbeat). */
    get failed() {
      return failed;
    },
    /** A retry after a failed sync. */
    retryIfFailed() {
      if (failed) {
        failed = false;
        trigger(0, true);
      }
    },
    stop() {
      stopped = true;
      stopping.abort();
      if (timer) clearTimeout(timer);
      for (const w of watchers.values()) w.close();
      watchers.clear();
    },
  };
}
