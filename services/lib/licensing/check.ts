import { readFile } from "node:fs/promises";
import { rootCertificates } from "node:tls";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { LicenseService, LicenseState } from "../../../gen/myosicam/license/v1/license_pb.js";
import { ConfigError, type Config } from "../config.js";
import type { Knex } from "../db.js";
import { createSignedTransport } from "../hmac/signing-client.js";
import { standingOf, type LicenseAnswer, type LicenseStanding, type Usage } from "./standing.js";
import { licenseKeyHash, readLicenseRecord, writeLicenseAnswer, writeLicenseFailure } from "./store.js";

const stateNames: Record<LicenseState, string> = {
  [LicenseState.UNSPECIFIED]: "unknown",
  [LicenseState.ACTIVE]: "active",
  [LicenseState.EXPIRED]: "expired",
  [LicenseState.REVOKED]: "revoked",
  [LicenseState.UNKNOWN]: "unknown",
};

/** The trust anchors for admin's certificate: the system's, this host's own, and ADMIN_TLS_CA. */
export async function adminTrustAnchors(config: Pick<Config, "adminTlsCaFile">, ownCertificate: string): Promise<string[]> {
  const anchors = [...rootCertificates];
  if (ownCertificate) anchors.push(ownCertificate);
  if (config.adminTlsCaFile) {
    try {
      anchors.push(await readFile(config.adminTlsCaFile, "utf8"));
    } catch (err) {
      throw new ConfigError("ADMIN_TLS_CA", `cannot read ${config.adminTlsCaFile} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  }
  return anchors;
}

export interface LicenseCheckOptions {
  db: Knex;
  config: Pick<Config, "licenseKey" | "panelCaller" | "adminTlsCaFile">;
  /** Where admin's LicenseService is. */
  adminUrl: string;
  ownCertificate: string;
  /** This panel's installation id. */
  panelId: string;
  usage: Usage;
  now?: () => Date;
  timeoutMs?: number;
}

/** The standing from what is stored, without asking admin. */
export async function currentStanding(db: Knex, licenseKey: string | undefined, now = new Date()): Promise<LicenseStanding> {
  if (!licenseKey) return standingOf(undefined, false, now);
  return standingOf(await readLicenseRecord(db, licenseKeyHash(licenseKey)), true, now);
}

/**
 * Asks admin about the panel's license, signed as the panel's caller, and stores the answer; when
 * admin cannot be asked, stores why and keeps the last answer (the grace period runs from it).
 * Answers the resulting standing.
 */
export async function checkLicense(options: LicenseCheckOptions): Promise<LicenseStanding & { reachedAdmin: boolean; error?: string }> {
  const { db, config } = options;
  const now = options.now ?? (() => new Date());
  if (!config.licenseKey) return { ...standingOf(undefined, false, now()), reachedAdmin: false };
  const keyHash = licenseKeyHash(config.licenseKey);
  let error: string;
  if (!config.panelCaller.secret) {
    error = "PANEL_CALLER_SECRET is not set, so the panel cannot sign its call to admin";
  } else {
    const secret = config.panelCaller.secret;
    const transport = createSignedTransport({
      baseUrl: options.adminUrl,
      // One request every 6 hours: HTTP/1.1 leaves no idle HTTP/2 session behind.
      credentials: { callerId: config.panelCaller.id, secret },
      ca: (await adminTrustAnchors(config, options.ownCertificate)).join("\n"),
      httpVersion: "1.1",
      defaultTimeoutMs: options.timeoutMs ?? 15_000,
    });
    try {
      const res = await createClient(LicenseService, transport).validateLicense({
        licenseKey: config.licenseKey,
        panelId: options.panelId,
        usage: options.usage,
      });
      const answer: LicenseAnswer = {
        valid: res.valid,
        state: stateNames[res.state],
        planId: res.plan?.id,
        planName: res.plan?.name,
        quotas: res.quotas && { maxServers: res.quotas.maxServers, maxInstances: res.quotas.maxInstances },
        expiresAt: res.expiresAt && timestampDate(res.expiresAt).toISOString(),
        message: res.message,
        usage: options.usage,
      };
      await writeLicenseAnswer(db, keyHash, answer, now());
      return { ...standingOf(await readLicenseRecord(db, keyHash), true, now()), reachedAdmin: true };
    } catch (err) {
      error = describeFailure(ConnectError.from(err), options.adminUrl);
    }
  }
  await writeLicenseFailure(db, keyHash, error, now());
  return { ...standingOf(await readLicenseRecord(db, keyHash), true, now()), reachedAdmin: false, error };
}

function describeFailure(err: ConnectError, adminUrl: string): string {
  switch (err.code) {
    case Code.Unauthenticated:
      return `admin at ${adminUrl} refused the panel's signature; check PANEL_CALLER_ID and PANEL_CALLER_SECRET against \`npx myosicam caller list\` on admin`;
    case Code.PermissionDenied:
      return `admin at ${adminUrl} refused the call: ${err.rawMessage}`;
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    case Code.Unknown:
    case Code.Internal:
      return `admin at ${adminUrl} is unreachable (${err.rawMessage})`;
    default:
      return `admin at ${adminUrl} answered ${Code[err.code]}: ${err.rawMessage}`;
  }
}
