import { createHash, randomBytes } from "node:crypto";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";

/** How to reach an instance's WebIF (OSCAM.md §6.1). */
export interface WebifTarget {
  host: string;
  port: number;
  /** `httpport` began with `+`. OScam falls back to plain HTTP when its TLS setup fails. */
  ssl: boolean;
  user: string;
  password: string;
}

/** Why a WebIF call failed, as the command result's failure code. */
export class WebifError extends Error {
  override name = "WebifError";
  constructor(
    readonly code: "webif_unreachable" | "webif_auth_failed" | "webif_forbidden" | "webif_error",
    message: string,
  ) {
    super(message);
  }
}

const md5 = (text: string) => createHash("md5").update(text).digest("hex");

function get(target: WebifTarget, path: string, authorization?: string): Promise<{ status: number; headers: IncomingMessage["headers"]; body: string }> {
  return new Promise((resolve, reject) => {
    const request = target.ssl ? httpsRequest : httpRequest;
    // OScam's certificate is self-signed (oscam.pem); the WebIF is reached on this host or its LAN.
    const req = request(
      {
        host: target.host,
        port: target.port,
        path,
        method: "GET",
        timeout: 10_000,
        rejectUnauthorized: false,
        headers: authorization ? { authorization } : {},
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += body.length < 1_000_000 ? c : ""));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("no answer within 10 s")));
    req.on("error", (err) => reject(new WebifError("webif_unreachable", `the WebIF at ${target.host}:${target.port} cannot be reached (${err.message})`)));
    req.end();
  });
}

/** The `Authorization: Digest …` header for a challenge (RFC 2617, MD5, qop=auth, as OScam asks). */
export function digestAuthorization(challenge: string, target: Pick<WebifTarget, "user" | "password">, path: string, nc = 1): string {
  const param = (name: string) => new RegExp(`${name}="?([^",]*)"?`, "i").exec(challenge)?.[1] ?? "";
  const realm = param("realm");
  const nonce = param("nonce");
  const opaque = param("opaque");
  const qop = param("qop") ? "auth" : "";
  const cnonce = randomBytes(8).toString("hex");
  const count = nc.toString(16).padStart(8, "0");
  const ha1 = md5(`${target.user}:${realm}:${target.password}`);
  const ha2 = md5(`GET:${path}`);
  const response = qop ? md5(`${ha1}:${nonce}:${count}:${cnonce}:${qop}:${ha2}`) : md5(`${ha1}:${nonce}:${ha2}`);
  return (
    `Digest username="${target.user}", realm="${realm}", nonce="${nonce}", uri="${path}", algorithm=MD5, response="${response}"` +
    (opaque ? `, opaque="${opaque}"` : "") +
    (qop ? `, qop=${qop}, nc=${count}, cnonce="${cnonce}"` : "")
  );
}

/**
 * GET `path` on the WebIF with digest authentication when it asks for it (a stale nonce is
 * answered once more). Answers the body of a 200; throws WebifError otherwise.
 */
export async function webifGet(target: WebifTarget, path: string): Promise<string> {
  let res = await get(target, path);
  for (let attempt = 0; res.status === 401 && attempt < 2; attempt++) {
    const challenge = String(res.headers["www-authenticate"] ?? "");
    if (!/^Digest /i.test(challenge)) break;
    if (!target.user || !target.password) throw new WebifError("webif_auth_failed", "the WebIF asks for a login, but oscam.conf has no httpuser/httppwd");
    res = await get(target, path, digestAuthorization(challenge, target, path));
  }
  if (res.status === 200) return res.body;
  if (res.status === 401) throw new WebifError("webif_auth_failed", "the WebIF refused httpuser/httppwd from oscam.conf");
  if (res.status === 403) throw new WebifError("webif_forbidden", "the WebIF refused this address: add it to httpallowed in oscam.conf");
  throw new WebifError("webif_error", `the WebIF answered HTTP ${res.status}`);
}

/** Asks OScam to re-read oscam.user at once (`/userconfig.html?action=reinit`, OSCAM.md §6.2). */
export async function reloadUsers(target: WebifTarget): Promise<void> {
  await webifGet(target, "/userconfig.html?action=reinit");
}
