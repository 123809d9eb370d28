import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ApiClientService } from "../../gen/myosicam/panel/v1/api_client_pb.js";
import { AuthService } from "../../gen/myosicam/panel/v1/auth_pb.js";
import type { Role } from "../../gen/myosicam/panel/v1/common_pb.js";
import { OperatorService } from "../../gen/myosicam/panel/v1/operator_pb.js";
import { localCredentialFile, readCliCredential } from "../../services/lib/cli-credential.js";
import { createSignedTransport } from "../../services/lib/hmac/signing-client.js";
import type { PanelHost } from "./panel-host.js";

/** A way to call the operator API: a client factory over one transport. */
export interface OperatorApi {
  transport: Transport;
  client<T extends DescService>(service: T): Client<T>;
}

const api = (transport: Transport): OperatorApi => ({ transport, client: (service) => createClient(service, transport) });

/** The panel's own owner API client: what its first start wrote for the local CLI. */
export async function ownerApi(panel: PanelHost): Promise<OperatorApi & { clientId: string; secret: string }> {
  const credential = await readCliCredential(localCredentialFile(panel.dataDir));
  if (!credential) throw new Error("the panel wrote no local CLI credential");
  return { ...signedApi(panel, credential.clientId, credential.secret), clientId: credential.clientId, secret: credential.secret };
}

/** Calls signed as API client `clientId`. */
export function signedApi(panel: PanelHost, clientId: string, secret: string | (() => string)): OperatorApi {
  const secretOf = typeof secret === "function" ? secret : () => secret;
  return api(createSignedTransport({ baseUrl: panel.url, credentials: () => ({ callerId: clientId, secret: secretOf() }), ca: panel.ca }));
}

/** A new API client with this role and scope, created by the owner; answers its API and id. */
export async function apiClientWith(
  panel: PanelHost,
  name: string,
  role: Role,
  scope: { serverIds?: string[]; tags?: string[] } = {},
): Promise<OperatorApi & { clientId: string; secret: string }> {
  const owner = await ownerApi(panel);
  const created = await owner.client(ApiClientService).createApiClient({ name, role, scope: { serverIds: scope.serverIds ?? [], tags: scope.tags ?? [] } });
  return { ...signedApi(panel, created.client!.id, created.secret), clientId: created.client!.id, secret: created.secret };
}

/** A browser-like session: keeps the cookie it is given and sends Origin like a page of the panel. */
/** A session's API and its cookie jar. */
export type SessionApi = OperatorApi & { cookie(): string | undefined; setCookie(c: string | undefined): void };

export function sessionApi(panel: PanelHost, origin = panel.url): SessionApi {
  let cookie: string | undefined;
  const jar: Interceptor = (next) => async (req) => {
    if (cookie) req.header.set("cookie", cookie);
    req.header.set("origin", origin);
    const res = await next(req);
    const set = res.header.get("set-cookie");
    if (set) cookie = set.includes("Max-Age=0") ? undefined : set.split(";")[0];
    return res;
  };
  const transport = createConnectTransport({ baseUrl: panel.url, httpVersion: "2", nodeOptions: { ca: panel.ca }, interceptors: [jar] });
  return { ...api(transport), cookie: () => cookie, setCookie: (c) => (cookie = c) };
}

/** An operator with `role` (and scope) who has signed in and chosen a password: their session API. */
export async function operatorSession(
  panel: PanelHost,
  email: string,
  role: Role,
  scope: { serverIds?: string[]; tags?: string[] } = {},
): Promise<SessionApi & { id: string; password: string }> {
  const owner = await ownerApi(panel);
  const created = await owner.client(OperatorService).createOperator({ email, role, scope: { serverIds: scope.serverIds ?? [], tags: scope.tags ?? [] } });
  const session = sessionApi(panel);
  const auth = session.client(AuthService);
  await auth.login({ email, password: created.oneTimePassword });
  const password = `${created.oneTimePassword}-chosen`;
  await auth.changePassword({ currentPassword: created.oneTimePassword, newPassword: password });
  return { ...session, id: created.operator!.id, password };
}

/** "ok", or the name of the code the call was refused with (e.g. "NotFound"). */
export async function codeOf(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return "ok";
  } catch (err) {
    return Code[ConnectError.from(err).code];
  }
}
