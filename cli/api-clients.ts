import { Code, ConnectError } from "@connectrpc/connect";
import { ApiClientService, type ApiClient } from "../gen/myosicam/panel/v1/api_client_pb.js";
import { isoOf, printJson } from "./context.js";
import { parseRole, roleName, scopeOf, scopeText } from "./operators.js";
import { panelApi } from "./panel-client.js";

function clientJson(c: ApiClient) {
  return {
    id: c.id,
    name: c.name,
    description: c.description,
    role: roleName(c.role),
    scope: { serverIds: c.scope?.serverIds ?? [], tags: c.scope?.tags ?? [] },
    revoked: c.revoked,
    createdBy: c.createdBy,
    createdAt: isoOf(c.createdAt),
    lastUsedAt: isoOf(c.lastUsedAt),
    rotatedAt: isoOf(c.rotatedAt),
    previousSecretValidUntil: isoOf(c.previousSecretValidUntil),
  };
}

function checkId(id: string): string {
  if (!/^ac_[0-9a-f]{24}$/.test(id))
    throw new ConnectError(`"${id}" is not an API client id (ac_…); see \`npx myosicam apiclient list\``, Code.InvalidArgument);
  return id;
}

export async function apiClientCreateCommand(
  name: string,
  options: { role: string; description?: string; serverId?: string[]; tag?: string[]; json: boolean },
): Promise<void> {
  const res = await (await panelApi())
    .client(ApiClientService)
    .createApiClient({ name, description: options.description ?? "", role: parseRole(options.role), scope: scopeOf(options.serverId, options.tag) });
  if (options.json) return printJson({ client: clientJson(res.client!), secret: res.secret });
  process.stdout.write(
    `API client ${res.client!.name} created: ${roleName(res.client!.role)} of ${scopeText(res.client!.scope)}.\n` +
      `caller id (X-Caller-Id): ${res.client!.id}\nsecret (shown once; sign requests as docs/api.md says): ${res.secret}\n`,
  );
}

export async function apiClientListCommand(options: { json: boolean }): Promise<void> {
  const { clients } = await (await panelApi()).client(ApiClientService).listApiClients({});
  if (options.json) return printJson({ clients: clients.map(clientJson) });
  const lines = clients.map(
    (c) =>
      `${c.id}  ${c.name.padEnd(28)} ${roleName(c.role).padEnd(8)} ${c.revoked ? "revoked" : "active "} ${scopeText(c.scope)}; last used ${isoOf(c.lastUsedAt) ?? "never"}`,
  );
  process.stdout.write(lines.length ? `${lines.join("\n")}\n` : "no API clients\n");
}

export async function apiClientRotateCommand(id: string, options: { overlapSeconds: number; json: boolean }): Promise<void> {
  const res = await (await panelApi()).client(ApiClientService).rotateApiClientSecret({ clientId: checkId(id), overlapSeconds: options.overlapSeconds });
  if (options.json) return printJson({ client: clientJson(res.client!), secret: res.secret });
  const until = isoOf(res.client!.previousSecretValidUntil);
  process.stdout.write(
    `new secret of ${res.client!.name} (shown once): ${res.secret}\n${until ? `the old one stays valid until ${until}\n` : "the old one no longer works\n"}`,
  );
}

export async function apiClientRevokeCommand(id: string, options: { json: boolean }): Promise<void> {
  const res = await (await panelApi()).client(ApiClientService).revokeApiClient({ clientId: checkId(id) });
  if (options.json) return printJson({ client: clientJson(res.client!) });
  process.stdout.write(`API client ${res.client!.name} revoked: its next request is refused\n`);
}
