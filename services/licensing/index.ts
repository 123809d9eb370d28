import { getInstallation } from "../lib/installation.js";
import { checkLicense, currentStanding } from "../lib/licensing/check.js";
import { licenseStatusMigrations } from "../lib/licensing/store.js";
import type { ServiceDeps, ServiceModule } from "../lib/service-module.js";

/** Queue of the license check: at start and every 6 hours (DESIGN.md §3.8). */
export const licenseCheckQueue = "licensing.check";

/** Validates PANEL_LICENSE_KEY with admin, signed as the panel's caller, and logs the outcome. */
async function runCheck(deps: ServiceDeps): Promise<string> {
  const panelId = (await getInstallation(deps.db)).id;
  const result = await checkLicense({
    db: deps.db,
    config: deps.config,
    ownCertificate: deps.ownCertificate,
    adminUrl: deps.adminUrl(),
    panelId,
    usage: await deps.currentUsage(),
  });
  const fields = { license: result.state, usable: result.usable, graceEndsAt: result.graceEndsAt, expiresAt: result.expiresAt };
  if (result.state === "active") deps.log.info(fields, "license is valid");
  else if (result.usable) deps.log.warn(fields, result.message);
  else deps.log.error(fields, result.message);
  return `${result.state}: ${result.message}`;
}

/**
 * The panel's side of licensing: the scheduled check, the last answer in `license_status`, and
 * the standing in /readyz. Registration enforces the quotas with `currentStanding` and
 * `requireQuota` (services/lib/licensing).
 */
export const licensingService: ServiceModule = {
  name: "licensing",
  listener: "in-process",
  database: "panel",
  descriptors: [],
  migrations: licenseStatusMigrations,
  routes: () => () => {},
  jobs: (deps) => [
    {
      queue: licenseCheckQueue,
      cron: "0 */6 * * *",
      retryLimit: 0,
      async run(ctx) {
        await ctx.output(await runCheck(deps));
      },
    },
  ],
  async afterStart(deps) {
    // Through the queue, so the first check runs once the admin listener (maybe this process's) is up.
    await deps.enqueueJob(licenseCheckQueue);
    return undefined;
  },
  async readinessDetails(deps) {
    const standing = await currentStanding(deps.db, deps.config.licenseKey);
    return { license: standing };
  },
};
