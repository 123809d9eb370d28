import type { Knex } from "../db.js";
import { purgeNonces, purgeRefusals, refusalRetentionDays } from "../hmac/nonce-store.js";
import type { JobDefinition } from "./runner.js";

/** Jobs every database runs, whatever services it hosts. */
export function coreJobs(db: Knex, hmacSkewSeconds: number): JobDefinition[] {
  return [
    {
      queue: "core.nonce-purge",
      cron: "*/10 * * * *",
      async run(ctx) {
        // A nonce only needs remembering while its timestamp could still pass the skew check.
        const purged = await purgeNonces(db, 2 * hmacSkewSeconds);
        await ctx.output(`purged ${purged} nonces older than ${2 * hmacSkewSeconds} s`);
        const refusals = await purgeRefusals(db, refusalRetentionDays);
        if (refusals > 0) await ctx.output(`purged ${refusals} refused-request audit rows older than ${refusalRetentionDays} days`);
      },
    },
  ];
}
