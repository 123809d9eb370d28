import { Code, ConnectError } from "@connectrpc/connect";
import { AlertKind, AlertService, EmailProvider, type Alert, type EmailSettings } from "../gen/myosicam/panel/v1/alert_pb.js";
import { isoOf, printJson } from "./context.js";
import { panelApi } from "./panel-client.js";
import { readStdin } from "./stdin.js";

const emailPattern = /^[^\s@]{1,64}@[^\s@]{1,255}$/;

/** What `email smtp|mailgun|off` was given. */
export interface EmailRoute {
  provider: "none" | "smtp" | "mailgun";
  from?: string;
  recipients: string[];
  smtp?: { host: string; port: number; secure: boolean; username?: string };
  mailgun?: { domain: string; region: "us" | "eu" };
  /** Read the SMTP password or the Mailgun API key from stdin. */
  secretFromStdin: boolean;
}

function settingsJson(s: EmailSettings | undefined) {
  const provider = s ? EmailProvider[s.provider].toLowerCase() : "none";
  return {
    provider,
    from: s?.from || null,
    recipients: s?.recipients ?? [],
    ...(s?.smtp && {
      smtp: { host: s.smtp.host, port: s.smtp.port, secure: s.smtp.secure, username: s.smtp.username || null, passwordSet: s.smtp.passwordSet },
    }),
    ...(s?.mailgun && { mailgun: { domain: s.mailgun.domain, region: s.mailgun.region, apiKeySet: s.mailgun.apiKeySet } }),
  };
}

/** `email smtp|mailgun|off`: the route of alert e-mails; the secret is read from stdin and sealed by the panel. */
export async function emailSetCommand(route: EmailRoute, options: { json: boolean }): Promise<void> {
  if (route.provider !== "none") {
    for (const address of [route.from ?? "", ...route.recipients]) {
      if (!emailPattern.test(address)) throw new ConnectError(`"${address}" is not an e-mail address`, Code.InvalidArgument);
    }
  }
  const secret = route.secretFromStdin ? await readStdin() : "";
  if (route.provider === "mailgun" && !secret) throw new ConnectError("pass the Mailgun API key on stdin with --api-key-stdin", Code.InvalidArgument);
  const alerts = (await panelApi()).client(AlertService);
  const { settings } = await alerts.setEmailSettings({
    settings: {
      provider: { none: EmailProvider.NONE, smtp: EmailProvider.SMTP, mailgun: EmailProvider.MAILGUN }[route.provider],
      from: route.from ?? "",
      recipients: route.recipients,
      smtp: route.smtp && { ...route.smtp, username: route.smtp.username ?? "", password: secret },
      mailgun: route.mailgun && { ...route.mailgun, apiKey: secret },
    },
  });
  if (options.json) return printJson(settingsJson(settings));
  process.stdout.write(
    route.provider === "none"
      ? "alert e-mail is off; alerts stay in the console\n"
      : `alert e-mail goes through ${route.provider} to ${route.recipients.join(", ")}\n`,
  );
}

/** `email show`: the route, secrets only as set or not. */
export async function emailShowCommand(options: { json: boolean }): Promise<void> {
  const { settings } = await (await panelApi()).client(AlertService).getEmailSettings({});
  const s = settingsJson(settings);
  if (options.json) return printJson(s);
  if (s.provider === "none") return void process.stdout.write("alert e-mail is off; alerts stay in the console\n");
  const via = s.smtp
    ? `SMTP ${s.smtp.host}:${s.smtp.port}${s.smtp.secure ? " (TLS)" : ""}${s.smtp.username ? ` as ${s.smtp.username}` : ""}, password ${s.smtp.passwordSet ? "set" : "not set"}`
    : `Mailgun ${s.mailgun!.domain} (${s.mailgun!.region}), API key ${s.mailgun!.apiKeySet ? "set" : "not set"}`;
  process.stdout.write(`alert e-mail from ${s.from} to ${s.recipients.join(", ")} through ${via}\n`);
}

/** `email test`: one e-mail through the stored route, now. */
export async function emailTestCommand(options: { json: boolean }): Promise<void> {
  const { recipients } = await (await panelApi()).client(AlertService).sendTestEmail({});
  if (options.json) return printJson({ sent: true, recipients });
  process.stdout.write(`test e-mail sent to ${recipients.join(", ")}\n`);
}

function alertJson(a: Alert) {
  return {
    id: Number(a.id),
    serverId: a.serverId,
    server: a.serverName,
    kind: AlertKind[a.kind].toLowerCase(),
    message: a.message,
    raisedAt: isoOf(a.raisedAt),
    emailedAt: isoOf(a.emailedAt),
    emailError: a.emailError || null,
    acknowledgedAt: isoOf(a.acknowledgedAt),
    acknowledgedBy: a.acknowledgedBy || null,
  };
}

/** `alerts list`: the latest alerts (or only those not yet acknowledged). */
export async function alertListCommand(options: { open: boolean; json: boolean }): Promise<void> {
  const res = await (await panelApi()).client(AlertService).listAlerts({ unacknowledgedOnly: options.open, pageSize: 100 });
  if (options.json) return printJson({ alerts: res.alerts.map(alertJson), unacknowledged: res.unacknowledged });
  const lines = res.alerts.map(
    (a) =>
      `${String(a.id).padStart(6)}  ${isoOf(a.raisedAt)}  ${a.acknowledgedAt ? "ack " : "OPEN"}  ${a.message}${a.emailError ? `  (e-mail failed: ${a.emailError})` : ""}`,
  );
  process.stdout.write(lines.length ? `${lines.join("\n")}\n${res.unacknowledged} not acknowledged\n` : "no alerts\n");
}

/** `alerts ack <id…>`. */
export async function alertAckCommand(ids: string[], options: { json: boolean }): Promise<void> {
  for (const id of ids)
    if (!/^[1-9]\d{0,17}$/.test(id)) throw new ConnectError(`"${id}" is not an alert id; see \`npx myosicam alerts list\``, Code.InvalidArgument);
  const { acknowledged } = await (await panelApi()).client(AlertService).acknowledgeAlerts({ alertIds: ids.map((id) => BigInt(id)) });
  if (options.json) return printJson({ acknowledged });
  process.stdout.write(`${acknowledged} alert${acknowledged === 1 ? "" : "s"} acknowledged\n`);
}

/** `liveness show|set`: missed heartbeats before a server counts as unreachable. */
export async function livenessCommand(missed: number | undefined, options: { json: boolean }): Promise<void> {
  const alerts = (await panelApi()).client(AlertService);
  const { settings } =
    missed === undefined ? await alerts.getLivenessSettings({}) : await alerts.setLivenessSettings({ settings: { missedHeartbeats: missed } });
  if (options.json) return printJson({ missedHeartbeats: settings!.missedHeartbeats, heartbeatIntervalSeconds: settings!.heartbeatIntervalSeconds });
  process.stdout.write(
    `a server is unreachable after ${settings!.missedHeartbeats} missed heartbeats (every ${settings!.heartbeatIntervalSeconds} s: ${settings!.missedHeartbeats * settings!.heartbeatIntervalSeconds} s of silence)\n`,
  );
}
