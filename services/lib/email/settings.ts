import type { Knex } from "../db.js";
import type { MailRoute } from "./send.js";

/** Opens an envelope of `email_settings` (the crypto service does it for services). */
export type OpenSecret = (envelope: string, column: string, rowId: string) => Promise<string>;

/** The panel's mail route and alert recipients from `email_settings`, secrets opened. */
export async function readMailSettings(db: Knex, open: OpenSecret): Promise<{ route: MailRoute; recipients: string[] }> {
  const row = await db("email_settings").where({ singleton: true }).first();
  if (!row || row.provider === "none") return { route: { provider: "none" }, recipients: row?.alert_recipients ?? [] };
  const recipients: string[] = row.alert_recipients ?? [];
  if (row.provider === "smtp") {
    return {
      recipients,
      route: {
        provider: "smtp",
        from: row.from_address,
        host: row.smtp_host,
        port: row.smtp_port,
        secure: row.smtp_secure,
        username: row.smtp_username ?? undefined,
        password: row.smtp_password ? await open(row.smtp_password, "smtp_password", row.id) : undefined,
      },
    };
  }
  return {
    recipients,
    route: {
      provider: "mailgun",
      from: row.from_address,
      domain: row.mailgun_domain,
      region: row.mailgun_region === "eu" ? "eu" : "us",
      apiKey: await open(row.mailgun_api_key, "mailgun_api_key", row.id),
    },
  };
}

/** The stored settings, secrets sealed by `seal` for their row. */
export interface MailSettingsInput {
  provider: "none" | "smtp" | "mailgun";
  from?: string;
  recipients: string[];
  smtp?: { host: string; port: number; secure: boolean; username?: string; password?: string };
  mailgun?: { domain: string; region: "us" | "eu"; apiKey: string };
}

/**
 * Replaces the panel's mail route (one row). `seal(plaintext, column, rowId)` makes envelopes. A
 * secret not given keeps the stored one when the provider stays the same (secrets are
 * write-only: a form that shows "set" sends none back).
 */
export async function writeMailSettings(
  db: Knex,
  input: MailSettingsInput,
  seal: (plaintext: string, column: string, rowId: string) => Promise<string>,
  newId: string,
): Promise<void> {
  await db.transaction(async (trx) => {
    const existing = await trx("email_settings").where({ singleton: true }).forUpdate().first();
    const id: string = existing?.id ?? newId;
    const row = {
      id,
      singleton: true,
      provider: input.provider,
      from_address: input.from ?? null,
      alert_recipients: input.recipients,
      smtp_host: input.smtp?.host ?? null,
      smtp_port: input.smtp?.port ?? null,
      smtp_secure: input.smtp?.secure ?? true,
      smtp_username: input.smtp?.username ?? null,
      smtp_password: input.smtp?.password
        ? await seal(input.smtp.password, "smtp_password", id)
        : input.smtp && existing?.provider === "smtp"
          ? existing.smtp_password
          : null,
      mailgun_domain: input.mailgun?.domain ?? null,
      mailgun_region: input.mailgun?.region ?? null,
      mailgun_api_key: input.mailgun?.apiKey
        ? await seal(input.mailgun.apiKey, "mailgun_api_key", id)
        : input.mailgun && existing?.provider === "mailgun"
          ? existing.mailgun_api_key
          : null,
      updated_at: trx.fn.now(),
    };
    if (input.provider === "mailgun" && !row.mailgun_api_key) throw new MailSettingsError("a Mailgun route needs its API key");
    if (existing) await trx("email_settings").where({ id }).update(row);
    else await trx("email_settings").insert(row);
  });
}

/** Settings that cannot be stored as given (the caller's mistake). */
export class MailSettingsError extends Error {
  override name = "MailSettingsError";
}
