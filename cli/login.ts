import { randomBytes } from "node:crypto";
import { homedir, hostname, userInfo } from "node:os";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Code, ConnectError } from "@connectrpc/connect";
import { ApiClientService } from "../gen/myosicam/panel/v1/api_client_pb.js";
import { AuthService } from "../gen/myosicam/panel/v1/auth_pb.js";
import { userCredentialFile, writeCliCredential } from "../services/lib/cli-credential.js";
import { fetchPinnedCertificate, fingerprintOf, pinPattern } from "../services/lib/pinned-certificate.js";
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { printJson } from "./context.js";
import { roleName, scopeText } from "./operators.js";
import { readPassword } from "./stdin.js";

/** The certificate of a panel whose certificate this machine's trust store accepts. */
function fetchTrustedCertificate(url: URL): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: url.hostname,
      port: Number(url.port || 443),
      servername: isIP(url.hostname) ? undefined : url.hostname,
      minVersion: "TLSv1.3",
    });
    socket.setTimeout(15_000, () => socket.destroy(new Error("no TLS answer within 15 s")));
    socket.once("secureConnect", () => {
      const raw = socket.getPeerCertificate().raw;
      socket.end();
      resolve(new X509Certificate(raw).toString());
    });
    socket.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        /self.signed|unable to verify|certificate/i.test(err.message)
          ? new Error(`its certificate is not one this machine trusts (${err.message}); pass --fingerprint sha256:… as \`npm start\` printed it`)
          : err,
      ),
    );
  });
}

/**
 * `login --panel URL --email …`: signs in once with the operator's password, creates an API
 * client acting for them (their role and scope, revoked with them), stores its credential in
 * ~/.config/myosicam/credentials.json (0600; MYOSICAM_CREDENTIALS names another file), and signs
 * out. Every later command signs its requests with it; no password or session is kept.
 */
export async function loginCommand(options: { panel: string; email: string; fingerprint?: string; json: boolean }): Promise<void> {
  let url: URL;
  try {
    url = new URL(options.panel);
  } catch {
    throw new ConnectError(`--panel must be the panel's URL, e.g. https://panel.example.com:8443 (got "${options.panel}")`, Code.InvalidArgument);
  }
  if (url.protocol !== "https:") throw new ConnectError("--panel must start with https://", Code.InvalidArgument);
  if (options.fingerprint !== undefined && !pinPattern.test(options.fingerprint)) {
    throw new ConnectError("--fingerprint is the panel certificate's SHA-256 as `npm start` prints it: sha256:<64 hex>", Code.InvalidArgument);
  }
  // With a fingerprint, the certificate it names; without, one this machine already trusts (a
  // panel with a real certificate). Either way it is stored and pinned from then on.
  const certificate = await (options.fingerprint ? fetchPinnedCertificate(url.origin, options.fingerprint) : fetchTrustedCertificate(url)).catch(
    (err: Error) => {
      throw new ConnectError(`cannot reach ${url.origin}: ${err.message}`, Code.Unavailable);
    },
  );
  const pin = fingerprintOf(new X509Certificate(certificate).raw);
  let cookie: string | undefined;
  // A browser-like session for this one exchange: the cookie, and the panel's own Origin.
  const session: Interceptor = (next) => async (req) => {
    req.header.set("origin", url.origin);
    if (cookie) req.header.set("cookie", cookie);
    const res = await next(req);
    const set = res.header.get("set-cookie");
    if (set) cookie = set.split(";")[0];
    return res;
  };
  const transport = createConnectTransport({
    baseUrl: url.origin,
    httpVersion: "1.1",
    nodeOptions: { ca: certificate, checkServerIdentity: (_host, cert) => (fingerprintOf(cert.raw) === pin ? undefined : new Error("certificate changed")) },
    interceptors: [session],
  });
  const auth = createClient(AuthService, transport);
  const password = await readPassword(`password for ${options.email}: `);
  const { identity } = await auth.login({ email: options.email, password });
  try {
    if (identity!.mustChangePassword) {
      throw new ConnectError("this account still has its one-time password: sign in to the console once and choose a new one", Code.FailedPrecondition);
    }
    const name = `cli ${userInfo().username}@${hostname()} ${randomBytes(3).toString("hex")}`.replace(/[^A-Za-z0-9 _.@:-]/g, "-").slice(0, 64);
    const created = await createClient(ApiClientService, transport).createApiClient({
      name,
      description: `myosicam login by ${identity!.name}`,
      role: identity!.role,
      scope: identity!.scope,
    });
    const file = process.env.MYOSICAM_CREDENTIALS ?? userCredentialFile(process.env.HOME ?? homedir());
    await writeCliCredential(file, { panelUrl: url.origin, clientId: created.client!.id, secret: created.secret, certificate });
    if (options.json) return printJson({ panel: url.origin, clientId: created.client!.id, file, role: roleName(identity!.role) });
    process.stdout.write(
      `signed in to ${url.origin} as ${identity!.name} (${roleName(identity!.role)} of ${scopeText(identity!.scope)}).\n` +
        `this machine now signs as API client ${created.client!.id} (stored in ${file}); revoke it with \`npx myosicam apiclient revoke ${created.client!.id}\`\n`,
    );
  } finally {
    await auth.logout({}).catch(() => {});
  }
}
