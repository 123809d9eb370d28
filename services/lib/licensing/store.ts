import { createHash } from "node:crypto";
import type { Knex, Migration } from "../db.js";
import type { LicenseAnswer, LicenseRecord } from "./standing.js";

/** `license_status`: admin's last answer per license key (by hash), shared by every panel replica. */
export const licenseStatusMigrations: readonly Migration[] = [
  {
    name: "licensing/0001_license_status",
    async up(db) {
      await db.schema.createTable("license_status", (t) => {
        t.text("key_hash").primary().comment("sha256 hex of PANEL_LICENSE_KEY");
        t.jsonb("answer").comment("admin's last answer");
        t.timestamp("answered_at", { useTz: true });
        t.text("last_error");
        t.timestamp("failed_at", { useTz: true });
        t.timestamp("updated_at", { useTz: true }).notNullable().defaultTo(db.fn.now());
      });
    },
  },
];

export const licenseKeyHash = (key: string) => createHash("sha256").update(key, "utf8").digest("hex");

export async function readLicenseRecord(db: Knex, keyHash: string): Promise<LicenseRecord | undefined> {
  const row = await db("license_status").where({ key_hash: keyHash }).first();
  if (!row) return undefined;
  return {
    answer: row.answer ?? undefined,
    answeredAt: row.answered_at ?? undefined,
    lastError: row.last_error ?? undefined,
    failedAt: row.failed_at ?? undefined,
  };
}

/** Stores an answer from admin (replacing the previous one; an older answer never wins). */
export async function writeLicenseAnswer(db: Knex, keyHash: string, answer: LicenseAnswer, at: Date): Promise<void> {
  await db("license_status")
    .insert({ key_hash: keyHash, answer: JSON.stringify(answer), answered_at: at, last_error: null, failed_at: null })
    .onConflict("key_hash")
    .merge({ answer: JSON.stringify(answer), answered_at: at, last_error: null, failed_at: null, updated_at: db.fn.now() })
    .where("license_status.answered_at", null)
    .orWhere("license_status.answered_at", "<=", at);
}

/** Records that admin could not be asked; the last answer is kept. */
export async function writeLicenseFailure(db: Knex, keyHash: string, reason: string, at: Date): Promise<void> {
  await db("license_status")
    .insert({ key_hash: keyHash, last_error: reason, failed_at: at })
    .onConflict("key_hash")
    .merge({ last_error: reason, failed_at: at, updated_at: db.fn.now() });
}
