import nodemailer from "nodemailer";

/** Where e-mail goes, with its secrets already decrypted (held only while sending). */
export type MailRoute =
  | { provider: "none" }
  | {
      provider: "smtp";
      from: string;
      host: string;
      port: number;
      /** true: TLS from the first byte (465); false: STARTTLS when offered (587, 25). */
      secure: boolean;
      username?: string;
      password?: string;
      /** Trust anchors for a private SMTP server's certificate. */
      ca?: string;
    }
  | { provider: "mailgun"; from: string; domain: string; region: "us" | "eu"; apiKey: string; baseUrl?: string };

export interface Mail {
  to: readonly string[];
  subject: string;
  text: string;
}

/** Sends one message; throws an Error whose message says what failed (never a credential). */
export async function sendMail(route: MailRoute, mail: Mail): Promise<void> {
  if (route.provider === "none") throw new Error("e-mail is not configured (`npx myosicam email smtp …` or `email mailgun …`)");
  if (mail.to.length === 0) throw new Error("no alert recipients are configured (`--to` of `npx myosicam email …`)");
  if (route.provider === "smtp") {
    const transport = nodemailer.createTransport({
      host: route.host,
      port: route.port,
      secure: route.secure,
      requireTLS: false,
      auth: route.username ? { user: route.username, pass: route.password ?? "" } : undefined,
      tls: { minVersion: "TLSv1.2", ...(route.ca ? { ca: route.ca } : {}) },
      connectionTimeout: 15_000,
      greetingTimeout: 15_000,
      socketTimeout: 30_000,
    });
    try {
      await transport.sendMail({ from: route.from, to: [...mail.to], subject: mail.subject, text: mail.text });
    } catch (err) {
      const e = err as { code?: string; responseCode?: number; message?: string };
      throw new Error(
        `SMTP ${route.host}:${route.port} refused the message (${e.code ?? "error"}${e.responseCode ? ` ${e.responseCode}` : ""}: ${e.message ?? String(err)})`,
      );
    } finally {
      transport.close();
    }
    return;
  }
  const base = route.baseUrl ?? (route.region === "eu" ? "https://api.eu.mailgun.net" : "https://api.mailgun.net");
  const body = new URLSearchParams({ from: route.from, subject: mail.subject, text: mail.text });
  for (const to of mail.to) body.append("to", to);
  const res = await fetch(`${base}/v3/${encodeURIComponent(route.domain)}/messages`, {
    method: "POST",
    headers: { authorization: `Basic ${Buffer.from(`api:${route.apiKey}`).toString("base64")}` },
    body,
    signal: AbortSignal.timeout(30_000),
  }).catch((err: Error) => {
    throw new Error(`Mailgun at ${base} is unreachable (${err.message})`);
  });
  if (!res.ok) throw new Error(`Mailgun refused the message: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
}
