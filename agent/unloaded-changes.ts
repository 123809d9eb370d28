/**
 * Account changes written to oscam.user that the running OScam has not loaded: the reload through
 * its WebIF was impossible (WebIF off or read-only, refused, unreachable). Until OScam re-reads the
 * file — a later reload, or a restart (a new pid) — the file is not what OScam serves, and the
 * instance says so in its snapshot ("restart needed") instead of passing the file off as live.
 * Kept in the agent's memory, one per agent process (agent/run.ts): an agent restart forgets it.
 */
export interface UnloadedChanges {
  /** `changes` were written to the instance's oscam.user while OScam (pid) did not load them. */
  written(configDir: string, pid: number | undefined, changes: number): void;
  /** OScam re-read oscam.user: nothing is pending. */
  loaded(configDir: string): void;
  /** The problem line for a snapshot, or undefined when OScam serves what the file says. */
  problem(configDir: string, pid: number | undefined): string | undefined;
}

export function createUnloadedChanges(): UnloadedChanges {
  const pending = new Map<string, { pid: number | undefined; changes: number }>();
  return {
    written(configDir, pid, changes) {
      const now = pending.get(configDir);
      pending.set(configDir, { pid, changes: (now && now.pid === pid ? now.changes : 0) + changes });
    },
    loaded(configDir) {
      pending.delete(configDir);
    },
    problem(configDir, pid) {
      const now = pending.get(configDir);
      if (!now) return undefined;
      // Started again since: OScam read the file at its start.
      if (now.pid !== pid) {
        pending.delete(configDir);
        return undefined;
      }
      return `restart_needed: OScam has not loaded ${now.changes} change${now.changes === 1 ? "" : "s"} written to oscam.user (its WebIF could not reload it); restart it, or reload once the WebIF allows it, to load them`;
    },
  };
}
