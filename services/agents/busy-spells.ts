import { randomUUID } from "node:crypto";
import type { BusySpell } from "../lib/admission.js";
import type { DatabaseOutage } from "../lib/database-outage.js";
import { queryErrorWords, type Knex } from "../lib/db.js";
import type { Logger } from "../lib/log.js";
import { upsertBusySpell } from "./alert-store.js";

/**
 * Keeps this process's spells of refusing calls in the database, where every replica's liveness
 * scan reads them (alerts.ts, deafSpans). One write at a time: a report that comes while one is
 * written replaces any other waiting, so a slow database sees one row write per spell in flight,
 * never a queue of them. A failed write is logged (once per outage when the database is down) and
 * the next report writes the spell again.
 */
export function createBusySpellRecorder(db: Knex, log: Logger, databaseOutage?: Pick<DatabaseOutage, "notice">) {
  let spell: { startedAt: number; id: string } | undefined;
  let waiting: { id: string; spell: BusySpell } | undefined;
  let writing: Promise<void> | undefined;
  const writeWaiting = async () => {
    while (waiting) {
      const { id, spell: next } = waiting;
      waiting = undefined;
      try {
        await upsertBusySpell(db, id, next);
      } catch (err) {
        if (!databaseOutage?.notice(err)) {
          log.warn({ reason: queryErrorWords(err) }, "could not record a spell of refusing calls; the liveness scan may count it as the agents' silence");
        }
      }
    }
    writing = undefined;
  };
  return {
    /** Told by admission control (ServiceModule.onRefusalSpell). */
    record(next: BusySpell) {
      if (spell?.startedAt !== next.startedAt.getTime()) spell = { startedAt: next.startedAt.getTime(), id: randomUUID() };
      waiting = { id: spell.id, spell: next };
      writing ??= writeWaiting();
    },
    /** Resolves once what was reported is written (or failed). */
    async flush() {
      await writing;
    },
  };
}
