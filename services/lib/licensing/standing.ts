import { Code, ConnectError } from "@connectrpc/connect";

/** How long the last valid answer holds while admin cannot be reached (DESIGN.md §3.8). */
export const licenseGraceMs = 72 * 3600 * 1000;

/** The license quotas; 0 means unlimited. */
export interface Quotas {
  maxServers: number;
  maxInstances: number;
}

export interface Usage {
  servers: number;
  instances: number;
}

/** Admin's last answer about this panel's license, as stored. */
export interface LicenseAnswer {
  valid: boolean;
  /** "active" | "expired" | "revoked" | "unknown" */
  state: string;
  planId?: string;
  planName?: string;
  quotas?: Quotas;
  /** ISO date; absent when the license never expires. */
  expiresAt?: string;
  message: string;
  /** Usage reported with the question. */
  usage: Usage;
}

/** What the panel knows of its license (the `license_status` row for the configured key). */
export interface LicenseRecord {
  answer?: LicenseAnswer;
  answeredAt?: Date;
  /** Why the last attempt to ask admin failed, when it failed after the last answer. */
  lastError?: string;
  failedAt?: Date;
}

export type LicenseStandingState = "unlicensed" | "unverified" | "active" | "grace" | "over_quota" | "invalid" | "expired";

/** The panel's license right now: what registration enforces and what /readyz shows. */
export interface LicenseStanding {
  state: LicenseStandingState;
  /** Whether agents may register (still subject to the quotas). */
  usable: boolean;
  quotas?: Quotas;
  planName?: string;
  expiresAt?: string;
  /** Words for the operator. */
  message: string;
  /** During the grace period: when it ends. */
  graceEndsAt?: string;
  checkedAt?: string;
}

/** Evaluates a license record at `now`; pure, so grace and expiry can be tested at any time. */
export function standingOf(record: LicenseRecord | undefined, hasKey: boolean, now: Date): LicenseStanding {
  if (!hasKey) return { state: "unlicensed", usable: false, message: "no PANEL_LICENSE_KEY is configured; agents cannot register until one is" };
  const answer = record?.answer;
  const checkedAt = record?.answeredAt?.toISOString();
  if (!answer || !record?.answeredAt) {
    return record?.lastError
      ? { state: "unverified", usable: false, message: `the license could not be validated yet: ${record.lastError}` }
      : { state: "unverified", usable: false, message: "the license has not been validated yet" };
  }
  const base = { quotas: answer.quotas, planName: answer.planName, expiresAt: answer.expiresAt, checkedAt };
  if (answer.state === "expired" || (answer.expiresAt && new Date(answer.expiresAt) <= now)) {
    return {
      ...base,
      state: "expired",
      usable: false,
      message: answer.state === "expired" ? answer.message : `license expired on ${answer.expiresAt!.slice(0, 10)}`,
    };
  }
  if (answer.state !== "active") return { ...base, state: "invalid", usable: false, message: answer.message || `license is ${answer.state}` };
  const overQuota = answer.quotas !== undefined && exceeds(answer.quotas, answer.usage);
  if (!answer.valid && !overQuota) return { ...base, state: "invalid", usable: false, message: answer.message };

  const unreachableSince = record.failedAt && record.failedAt > record.answeredAt ? record.failedAt : undefined;
  if (unreachableSince) {
    const graceEnds = new Date(record.answeredAt.getTime() + licenseGraceMs);
    if (now > graceEnds) {
      return {
        ...base,
        state: "expired",
        usable: false,
        message: `admin could not be reached to validate the license since ${record.answeredAt.toISOString()} (${record.lastError}); the 72 h grace period ended at ${graceEnds.toISOString()}`,
      };
    }
    return {
      ...base,
      state: "grace",
      usable: true,
      graceEndsAt: graceEnds.toISOString(),
      message: `admin cannot be reached (${record.lastError}); the last valid answer holds until ${graceEnds.toISOString()}`,
    };
  }
  if (overQuota) return { ...base, state: "over_quota", usable: true, message: answer.message || "usage exceeds the license quotas" };
  return { ...base, state: "active", usable: true, message: "license is valid" };
}

function exceeds(quotas: Quotas, usage: Usage): boolean {
  return (quotas.maxServers > 0 && usage.servers > quotas.maxServers) || (quotas.maxInstances > 0 && usage.instances > quotas.maxInstances);
}

/**
 * The refusal of growth the license does not allow, or undefined: `usage` is what is in use now,
 * `adding` what the caller wants to add. ResourceExhausted naming the quota when it would be
 * exceeded; FailedPrecondition when the license is not usable at all.
 */
export function quotaRefusal(standing: LicenseStanding, usage: Usage, adding: Partial<Usage>): ConnectError | undefined {
  if (!standing.usable) return new ConnectError(`the panel's license does not allow this: ${standing.message}`, Code.FailedPrecondition);
  const quotas = standing.quotas;
  if (!quotas) return undefined;
  const servers = usage.servers + (adding.servers ?? 0);
  const instances = usage.instances + (adding.instances ?? 0);
  if ((adding.servers ?? 0) > 0 && quotas.maxServers > 0 && servers > quotas.maxServers) {
    return new ConnectError(
      `license quota reached: ${usage.servers} of ${quotas.maxServers} servers in use (plan ${standing.planName ?? "?"}); remove a server or upgrade the license`,
      Code.ResourceExhausted,
    );
  }
  if ((adding.instances ?? 0) > 0 && quotas.maxInstances > 0 && instances > quotas.maxInstances) {
    return new ConnectError(
      `license quota reached: ${usage.instances} of ${quotas.maxInstances} OScam instances in use (plan ${standing.planName ?? "?"}); remove an instance or upgrade the license`,
      Code.ResourceExhausted,
    );
  }
  return undefined;
}

/** Throws `quotaRefusal`'s error, if there is one. */
export function requireQuota(standing: LicenseStanding, usage: Usage, adding: Partial<Usage>): void {
  const refusal = quotaRefusal(standing, usage, adding);
  if (refusal) throw refusal;
}
