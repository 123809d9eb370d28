import { createHash, randomBytes, randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Knex } from "../lib/db.js";
import {
  insertLicense,
  recordUsage,
  recordValidation,
  revokeLicense,
  selectLicenseByKeyHash,
  selectLicenses,
  selectPlan,
  selectPlans,
  upsertPlan,
  type LicenseRow,
  type PlanFields,
  type PlanRow,
} from "./store.js";

/** A plan as the rest of admin sees it. */
export type Plan = PlanFields;

export interface Usage {
  servers: number;
  instances: number;
}

/** What a license is, as the vendor knows it. */
export type LicenseState = "active" | "expired" | "revoked" | "unknown";

/** The answer to a validation (what LicenseService.ValidateLicense returns). */
export interface LicenseVerdict {
  valid: boolean;
  state: LicenseState;
  plan?: Plan;
  expiresAt?: Date;
  /** Words for the operator when not valid. */
  message: string;
}

/** A license in a list: never its key, only the first characters. */
export interface LicenseInfo {
  id: string;
  keyHint: string;
  customer: string;
  planId: string;
  state: LicenseState;
  expiresAt: Date | null;
  panelId: string | null;
  createdAt: Date;
  revokedAt: Date | null;
  revokedReason: string | null;
  lastValidatedAt: Date | null;
  lastUsage: Usage | null;
}

/** A license key: `mlk_` and 32 random bytes in base64url (47 characters). */
export function generateLicenseKey(): string {
  return `mlk_${randomBytes(32).toString("base64url")}`;
}

/** How a license key is stored and looked up: SHA-256, hex. */
export function hashLicenseKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

export const planIdPattern = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** The first quota `usage` exceeds, in words; undefined when within the plan (0 = unlimited). */
export function quotaExceeded(plan: Pick<Plan, "maxServers" | "maxInstances">, usage: Usage): string | undefined {
  if (plan.maxServers > 0 && usage.servers > plan.maxServers) return `${usage.servers} servers in use, the plan allows ${plan.maxServers}`;
  if (plan.maxInstances > 0 && usage.instances > plan.maxInstances) return `${usage.instances} OScam instances in use, the plan allows ${plan.maxInstances}`;
  return undefined;
}

const day = (d: Date) => d.toISOString().slice(0, 10);

/** Plans and licenses in admin's database (DESIGN.md §3.8). */
export function createLicenseBook(db: Knex) {
  return {
    async setPlan(plan: Plan): Promise<Plan> {
      if (!planIdPattern.test(plan.id))
        throw new ConnectError(`plan id "${plan.id}" must be lowercase letters, digits and -, e.g. "pro-50"`, Code.InvalidArgument);
      if (!/^[A-Z]{3}$/.test(plan.currency)) throw new ConnectError(`currency "${plan.currency}" must be an ISO 4217 code such as EUR`, Code.InvalidArgument);
      if (!plan.name.trim()) throw new ConnectError("a plan needs a name", Code.InvalidArgument);
      for (const [field, value] of [
        ["max servers", plan.maxServers],
        ["max instances", plan.maxInstances],
      ] as const) {
        if (!Number.isInteger(value) || value < 0 || value > 1_000_000)
          throw new ConnectError(`${field} must be a whole number from 0 (unlimited) to 1000000`, Code.InvalidArgument);
      }
      await upsertPlan(db, { ...plan, name: plan.name.trim() });
      return planOf((await selectPlan(db, plan.id))!);
    },

    async plans(onlyPublic = false): Promise<Plan[]> {
      return (await selectPlans(db, onlyPublic)).map(planOf);
    },

    /** Issues a license; answers it and its key (shown once, stored only as a hash). */
    async issue(input: { customer: string; planId: string; expiresAt: Date | null; panelId?: string }): Promise<{ license: LicenseInfo; key: string }> {
      if (!input.customer.trim()) throw new ConnectError("a license needs a customer name", Code.InvalidArgument);
      if (!(await selectPlan(db, input.planId))) {
        throw new ConnectError(`no plan "${input.planId}"; create it with \`npx myosicam admin plan set ${input.planId} …\``, Code.NotFound);
      }
      if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) throw new ConnectError("the expiry date is in the past", Code.InvalidArgument);
      const key = generateLicenseKey();
      const keyHash = hashLicenseKey(key);
      await insertLicense(db, {
        id: randomUUID(),
        keyHash,
        keyHint: key.slice(0, 10),
        customer: input.customer.trim(),
        planId: input.planId,
        expiresAt: input.expiresAt,
        panelId: input.panelId ?? null,
      });
      return { license: infoOf((await selectLicenseByKeyHash(db, keyHash))!), key };
    },

    async list(): Promise<LicenseInfo[]> {
      return (await selectLicenses(db)).map(infoOf);
    },

    /** Revokes a license: its panel is refused at its next check. */
    async revoke(id: string, reason: string): Promise<void> {
      if (!/^[0-9a-f-]{36}$/.test(id) || !(await revokeLicense(db, id, reason || "revoked by the vendor"))) {
        throw new ConnectError(`no active license with id ${id}; see \`npx myosicam admin license list\``, Code.NotFound);
      }
    },

    /**
     * What a panel's license allows. Binds an unbound license to the first panel that validates
     * it; a license bound to another panel is not valid here.
     */
    async validate(key: string, panelId: string, usage: Usage): Promise<LicenseVerdict> {
      const row = await selectLicenseByKeyHash(db, hashLicenseKey(key));
      if (!row) return { valid: false, state: "unknown", message: "no license matches this key; check PANEL_LICENSE_KEY" };
      const plan = planOf(row.plan);
      const expiresAt = row.expires_at ?? undefined;
      if (row.status === "revoked") {
        return {
          valid: false,
          state: "revoked",
          plan,
          expiresAt,
          message: `license was revoked on ${day(row.revoked_at!)}${row.revoked_reason ? ` (${row.revoked_reason})` : ""}`,
        };
      }
      if (row.expired) return { valid: false, state: "expired", plan, expiresAt, message: `license expired on ${day(row.expires_at!)}` };
      const boundTo = await recordValidation(db, row.id, panelId, usage);
      if (boundTo !== panelId) {
        return {
          valid: false,
          state: "active",
          plan,
          expiresAt,
          message: `license is bound to another panel installation (${boundTo}); ask the vendor to move it`,
        };
      }
      const over = quotaExceeded(plan, usage);
      if (over) return { valid: false, state: "active", plan, expiresAt, message: `over quota: ${over}` };
      return { valid: true, state: "active", plan, expiresAt, message: "" };
    },

    /** Records usage; answers the plan's quotas and whether usage is within them. */
    async reportUsage(key: string, panelId: string, usage: Usage): Promise<{ withinQuota: boolean; plan: Plan }> {
      const row = await selectLicenseByKeyHash(db, hashLicenseKey(key));
      if (!row) throw new ConnectError("no license matches this key; check PANEL_LICENSE_KEY", Code.NotFound);
      if (row.panel_id !== null && row.panel_id !== panelId) {
        throw new ConnectError("license is bound to another panel installation", Code.PermissionDenied);
      }
      await recordUsage(db, row.id, usage);
      const plan = planOf(row.plan);
      return { withinQuota: quotaExceeded(plan, usage) === undefined, plan };
    },
  };
}

export type LicenseBook = ReturnType<typeof createLicenseBook>;

function planOf(row: PlanRow): Plan {
  return {
    id: row.id,
    name: row.name,
    maxServers: Number(row.max_servers),
    maxInstances: Number(row.max_instances),
    monthlyPriceMinor: BigInt(row.monthly_price_minor),
    currency: row.currency,
    features: row.features,
    public: row.public,
  };
}

function infoOf(row: LicenseRow): LicenseInfo {
  const state: LicenseState = row.status === "revoked" ? "revoked" : row.expired ? "expired" : "active";
  return {
    id: row.id,
    keyHint: row.key_hint,
    customer: row.customer,
    planId: row.plan_id,
    state,
    expiresAt: row.expires_at === null ? null : new Date(row.expires_at),
    panelId: row.panel_id,
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
    revokedReason: row.revoked_reason,
    lastValidatedAt: row.last_validated_at,
    lastUsage: row.last_usage_servers === null ? null : { servers: row.last_usage_servers, instances: row.last_usage_instances ?? 0 },
  };
}
