import { randomUUID } from "node:crypto";
import { LicenseService } from "../../gen/myosicam/license/v1/license_pb.js";
import type { Config } from "../lib/config.js";
import type { Knex } from "../lib/db.js";
import type { Logger } from "../lib/log.js";
import type { CallerRegistry } from "./callers.js";
import { hashLicenseKey } from "./licenses.js";
import { insertLicense, selectLicenseByKeyHash, selectPlan, upsertPlan } from "./store.js";

/** The plan of the development license `npm start` creates. */
export const developmentPlan = { id: "development", name: "Development", maxServers: 10, maxInstances: 50 } as const;

/** The public pricing page's caller: it may read the plan catalog and nothing else. */
export const publicPricingCaller = { id: "public_pricing", allowedProcedures: [`/${LicenseService.typeName}/GetPlanCatalog`] } as const;

/**
 * What `npm start` needs so the panel and admin in one process trust each other with no manual
 * step: the panel's caller (with the secret written to config/.env), a `public_pricing` caller,
 * and a development license for PANEL_LICENSE_KEY. Each is created only when missing; nothing
 * existing is changed. Answers what was created.
 */
export async function ensureDevelopmentTrust(db: Knex, callers: CallerRegistry, config: Config, log: Logger): Promise<string[]> {
  const created: string[] = [];
  const panel = config.panelCaller;
  if (panel.secret) {
    if (!(await callers.get(panel.id))) {
      await callers.create({
        id: panel.id,
        description: "this panel (created by npm start)",
        allowedProcedures: [`/${LicenseService.typeName}/*`],
        secret: panel.secret,
      });
      created.push(`caller ${panel.id}`);
    } else if (!(await callers.holdsSecret(panel.id, panel.secret))) {
      log.warn(
        { caller: panel.id },
        "caller exists with another secret than PANEL_CALLER_SECRET; run `npx myosicam caller rotate` and put the new secret in PANEL_CALLER_SECRET",
      );
    }
  }
  if (!(await callers.get(publicPricingCaller.id))) {
    await callers.create({
      id: publicPricingCaller.id,
      description: "public pricing page (created by npm start)",
      allowedProcedures: publicPricingCaller.allowedProcedures,
    });
    created.push(`caller ${publicPricingCaller.id}`);
  }
  if (config.licenseKey && !(await selectLicenseByKeyHash(db, hashLicenseKey(config.licenseKey)))) {
    if (!(await selectPlan(db, developmentPlan.id))) {
      await upsertPlan(db, { ...developmentPlan, monthlyPriceMinor: 0n, currency: "EUR", features: ["development use"], public: false });
      created.push(`plan ${developmentPlan.id}`);
    }
    await insertLicense(db, {
      id: randomUUID(),
      keyHash: hashLicenseKey(config.licenseKey),
      keyHint: config.licenseKey.slice(0, 10),
      customer: "development (created by npm start)",
      planId: developmentPlan.id,
      expiresAt: null,
      panelId: null,
    });
    created.push("development license");
  }
  if (created.length > 0) log.info({ created }, "development trust set up: the panel and admin in this process trust each other");
  return created;
}
