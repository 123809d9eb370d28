import { X509Certificate } from "node:crypto";
import { homedir } from "node:os";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { localCredentialFile, readCliCredential, userCredentialFile, type CliCredential } from "../services/lib/cli-credential.js";
import { createSignedTransport } from "../services/lib/hmac/signing-client.js";
import { fingerprintOf } from "../services/lib/pinned-certificate.js";
import { type Server, ServerService } from "../gen/myosicam/panel/v1/server_pb.js";
import { createCommandContext } from "./context.js";

/** Where a credential came from, to say so in errors. */
interface FoundCredential {
  credential: CliCredential;
  file: string;
}

/**
 * The credential the CLI signs with, first found of: MYOSICAM_CREDENTIALS (a file), the panel's
 * data directory (on the panel host: written by its first start), ~/.config/myosicam (written by
 * `myosicam login`).
 */
export async function findCredential(): Promise<FoundCredential> {
  const candidates: string[] = [];
  if (process.env.MYOSICAM_CREDENTIALS) candidates.push(process.env.MYOSICAM_CREDENTIALS);
  else {
    const { config } = await createCommandContext();
    candidates.push(localCredentialFile(config.dataDir), userCredentialFile(process.env.HOME ?? homedir()));
  }
  for (const file of candidates) {
    const credential = await readCliCredential(file);
    if (credential) return { credential, file };
  }
  throw new ConnectError(
    `no credential for the panel: on the panel host start it once (\`npm start\` writes ${candidates[0]}); elsewhere run \`npx myosicam login --panel https://<panel>:8443\``,
    Code.Unauthenticated,
  );
}

/** Turns what a person cannot act on (a refused connection, a refused signature) into words. */
function explainErrors(found: FoundCredential): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code === Code.Unavailable && /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT/.test(e.rawMessage)) {
        throw new ConnectError(
          `cannot reach the panel at ${found.credential.panelUrl}: is it running (\`npm start\`)?`,
          Code.Unavailable,
          undefined,
          undefined,
          e,
        );
      }
      if (e.code === Code.Unauthenticated && e.rawMessage === "request signature rejected") {
        throw new ConnectError(
          `the panel refused this CLI's credential (${found.credential.clientId} from ${found.file}): it was revoked or rotated, or this machine's clock is off; sign in again with \`npx myosicam login\``,
          Code.Unauthenticated,
          undefined,
          undefined,
          e,
        );
      }
      throw e;
    }
  };
}

/** A factory of operator-API clients signed with the CLI's credential, pinned to its certificate. */
export async function panelApi(): Promise<{ client<T extends DescService>(service: T): Client<T>; credential: CliCredential }> {
  const found = await findCredential();
  const { credential } = found;
  const pin = fingerprintOf(new X509Certificate(credential.certificate).raw);
  const transport = createSignedTransport({
    baseUrl: credential.panelUrl,
    credentials: { callerId: credential.clientId, secret: credential.secret },
    ca: credential.certificate,
    // The stored certificate is pinned: whatever name the panel is reached by, it must be this one.
    checkServerIdentity: (_host, cert) =>
      fingerprintOf(cert.raw) === pin ? undefined : new Error(`the panel presented another certificate than the one in ${found.file}`),
    defaultTimeoutMs: 60_000,
    interceptors: [explainErrors(found)],
  });
  return { client: (service) => createClient(service, transport), credential };
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A server by id or exact name, as the caller may see it; NotFound in words otherwise. */
export async function findServer(api: Awaited<ReturnType<typeof panelApi>>, nameOrId: string): Promise<Server> {
  const servers = api.client(ServerService);
  const [server] = uuidPattern.test(nameOrId)
    ? [(await servers.getServer({ serverId: nameOrId })).server!]
    : (await servers.listServers({ filter: { name: nameOrId }, pageSize: 1 })).servers;
  if (!server) throw new ConnectError(`no server "${nameOrId}"; see \`npx myosicam agent list\``, Code.NotFound);
  return server;
}
