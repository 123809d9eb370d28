import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client, type ServiceImpl } from "@connectrpc/connect";
import type { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { AlertKind, EmailProvider, type AlertSchema, type AlertService, type EmailSettingsSchema } from "../../gen/myosicam/panel/v1/alert_pb.js";
import type { Knex } from "../lib/db.js";
import { idCursor } from "../lib/paging.js";
import { timestampOf } from "../lib/timestamps.js";
import { sendMail } from "../lib/email/send.js";
import { MailSettingsError, readMailSettings, writeMailSettings, type MailSettingsInput } from "../lib/email/settings.js";
import { principalOf, writeDb } from "../lib/principal.js";
import {
  acknowledgeAlerts,
  countUnacknowledged,
  selectAlertPage,
  selectEmailSettings,
  selectMissedHeartbeats,
  upsertMissedHeartbeats,
  type AlertRow,
} from "./alert-store.js";

const kinds: Record<string, AlertKind> = { server_unreachable: AlertKind.SERVER_UNREACHABLE, server_recovered: AlertKind.SERVER_RECOVERED };
const kindNames = new Map<AlertKind, string>(Object.entries(kinds).map(([n, v]) => [v, n]));
const providers = { none: EmailProvider.NONE, smtp: EmailProvider.SMTP, mailgun: EmailProvider.MAILGUN } as const;

function alertMessage(r: AlertRow): MessageInitShape<typeof AlertSchema> {
  return {
    id: BigInt(r.id),
    serverId: r.server_id ?? "",
    serverName: r.server_name ?? "",
    kind: kinds[r.kind] ?? AlertKind.UNSPECIFIED,
    message: r.message,
    raisedAt: timestampOf(r.raised_at),
    emailedAt: timestampOf(r.emailed_at),
    emailError: r.email_error ?? "",
    acknowledgedAt: timestampOf(r.acknowledged_at),
    acknowledgedBy: r.acknowledged_by ?? "",
  };
}

/** The stored route as answered: secrets only as "set". */
function settingsMessage(row: Record<string, unknown> | undefined): MessageInitShape<typeof EmailSettingsSchema> {
  const provider = (row?.provider as keyof typeof providers | undefined) ?? "none";
  return {
    provider: providers[provider],
    from: (row?.from_address as string | null) ?? "",
    recipients: (row?.alert_recipients as string[] | undefined) ?? [],
    smtp:
      provider === "smtp"
        ? {
            host: row!.smtp_host as string,
            port: row!.smtp_port as number,
            secure: row!.smtp_secure as boolean,
            username: (row!.smtp_username as string | null) ?? "",
            passwordSet: Boolean(row!.smtp_password),
          }
        : undefined,
    mailgun:
      provider === "mailgun"
        ? { domain: row!.mailgun_domain as string, region: row!.mailgun_region as string, apiKeySet: Boolean(row!.mailgun_api_key) }
        : undefined,
  };
}

export interface AlertServiceDeps {
  db: Knex;
  crypto: Client<typeof CryptoService>;
  /** AGENT_HEARTBEAT_INTERVAL_SECONDS and AGENT_MISSED_HEARTBEATS: what applies until set. */
  heartbeatIntervalSeconds: number;
  defaultMissedHeartbeats: number;
}

/** Handlers of `myosicam.panel.v1.AlertService`. */
export function createAlertService(deps: AlertServiceDeps): ServiceImpl<typeof AlertService> {
  const { db, crypto } = deps;
  const open = async (envelope: string, column: string, rowId: string) =>
    Buffer.from((await crypto.decrypt({ envelope, context: { table: "email_settings", column, rowId } })).plaintext).toString("utf8");
  const seal = async (plaintext: string, column: string, rowId: string) =>
    (await crypto.encrypt({ plaintext: Buffer.from(plaintext, "utf8"), context: { table: "email_settings", column, rowId } })).envelope;
  const liveness = async (from: Knex = db) => ({
    missedHeartbeats: (await selectMissedHeartbeats(from)) ?? deps.defaultMissedHeartbeats,
    heartbeatIntervalSeconds: deps.heartbeatIntervalSeconds,
  });

  return {
    async listAlerts(req, ctx) {
      const principal = principalOf(ctx);
      const size = req.pageSize || 50;
      const filter = { serverId: req.serverId || undefined, kinds: req.kinds.map((k) => kindNames.get(k)!), unacknowledgedOnly: req.unacknowledgedOnly };
      const [rows, unacknowledged] = await Promise.all([
        selectAlertPage(db, principal.scope, filter, size + 1, idCursor(req.pageToken)),
        countUnacknowledged(db, principal.scope),
      ]);
      const page = rows.slice(0, size);
      return { alerts: page.map(alertMessage), nextPageToken: rows.length > size ? String(page.at(-1)!.id) : "", unacknowledged };
    },

    async acknowledgeAlerts(req, ctx) {
      const principal = principalOf(ctx);
      const ids = await acknowledgeAlerts(
        writeDb(ctx, db),
        principal.scope,
        req.alertIds.map((id) => String(id)),
        principal.name,
      );
      writeDb(ctx, db, ...ids.map((id) => `alert:${id}`));
      return { acknowledged: ids.length };
    },

    async getEmailSettings() {
      return { settings: settingsMessage(await selectEmailSettings(db)) };
    },

    async setEmailSettings(req, ctx) {
      const s = req.settings!;
      const provider = (Object.keys(providers) as Array<keyof typeof providers>).find((p) => providers[p] === s.provider)!;
      if (provider !== "none" && (!s.from || s.recipients.length === 0)) {
        throw new ConnectError("settings: an e-mail route needs a sender (from) and at least one recipient", Code.InvalidArgument);
      }
      if (provider === "smtp" && !s.smtp) throw new ConnectError("settings.smtp: the SMTP server's host and port", Code.InvalidArgument);
      if (provider === "mailgun" && !s.mailgun) throw new ConnectError("settings.mailgun: the Mailgun domain, region and API key", Code.InvalidArgument);
      const input: MailSettingsInput = {
        provider,
        from: s.from || undefined,
        recipients: s.recipients,
        smtp:
          provider === "smtp"
            ? {
                host: s.smtp!.host,
                port: s.smtp!.port,
                secure: s.smtp!.secure,
                username: s.smtp!.username || undefined,
                password: s.smtp!.password || undefined,
              }
            : undefined,
        mailgun: provider === "mailgun" ? { domain: s.mailgun!.domain, region: s.mailgun!.region as "us" | "eu", apiKey: s.mailgun!.apiKey } : undefined,
      };
      const trx = writeDb(ctx, db, "settings:email");
      try {
        await writeMailSettings(trx, input, seal, randomUUID());
      } catch (err) {
        if (err instanceof MailSettingsError) throw new ConnectError(`settings: ${err.message}`, Code.InvalidArgument);
        throw err;
      }
      return { settings: settingsMessage(await selectEmailSettings(trx)) };
    },

    async sendTestEmail() {
      const { route, recipients } = await readMailSettings(db, open);
      if (route.provider === "none") throw new ConnectError("e-mail is off: set a route first (AlertService.SetEmailSettings)", Code.FailedPrecondition);
      try {
        await sendMail(route, {
          to: recipients,
          subject: "[MyOsicam] test e-mail",
          text: "This is a test e-mail from your MyOsicam panel: alert e-mails reach you this way.\n",
        });
      } catch (err) {
        throw new ConnectError(`the test e-mail was not sent: ${(err as Error).message}`, Code.FailedPrecondition);
      }
      return { recipients };
    },

    async getLivenessSettings() {
      return { settings: await liveness() };
    },

    async setLivenessSettings(req, ctx) {
      const trx = writeDb(ctx, db, "settings:liveness");
      await upsertMissedHeartbeats(trx, req.settings!.missedHeartbeats);
      return { settings: await liveness(trx) };
    },
  };
}
