import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { LicenseState, PlanSchema, type LicenseService } from "../../gen/myosicam/license/v1/license_pb.js";
import type { LicenseBook, Plan } from "./licenses.js";

const states = {
  active: LicenseState.ACTIVE,
  expired: LicenseState.EXPIRED,
  revoked: LicenseState.REVOKED,
  unknown: LicenseState.UNKNOWN,
} as const;

/** A plan in the license contract's shape. */
export function planMessage(plan: Plan) {
  return create(PlanSchema, {
    id: plan.id,
    name: plan.name,
    quotas: { maxServers: plan.maxServers, maxInstances: plan.maxInstances },
    monthlyPriceMinor: plan.monthlyPriceMinor,
    currency: plan.currency,
    features: [...plan.features],
  });
}

/** Handlers of `myosicam.license.v1.LicenseService`; callers are authenticated and allow-listed before these run. */
export function createLicenseService(book: LicenseBook): ServiceImpl<typeof LicenseService> {
  return {
    async validateLicense(req) {
      const usage = { servers: req.usage?.servers ?? 0, instances: req.usage?.instances ?? 0 };
      const verdict = await book.validate(req.licenseKey, req.panelId, usage);
      return {
        valid: verdict.valid,
        state: states[verdict.state],
        plan: verdict.plan && planMessage(verdict.plan),
        quotas: verdict.plan && { maxServers: verdict.plan.maxServers, maxInstances: verdict.plan.maxInstances },
        expiresAt: verdict.expiresAt && timestampFromDate(verdict.expiresAt),
        message: verdict.message,
      };
    },
    async getPlanCatalog() {
      return { plans: (await book.plans(true)).map(planMessage) };
    },
    async reportUsage(req) {
      const usage = { servers: req.usage?.servers ?? 0, instances: req.usage?.instances ?? 0 };
      const { withinQuota, plan } = await book.reportUsage(req.licenseKey, req.panelId, usage);
      return { withinQuota, quotas: { maxServers: plan.maxServers, maxInstances: plan.maxInstances } };
    },
  };
}
