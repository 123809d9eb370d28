import { readFile } from "node:fs/promises";
import { fromJson, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { ApplyAccountsSchema, ApplyConfigSchema, UpgradeAgentSchema, CommandKind } from "../gen/myosicam/agent/v1/agent_pb.js";
import { CommandService, CommandStatus, type Command, type SendCommandRequestSchema } from "../gen/myosicam/panel/v1/command_pb.js";
import { InstallTokenState, ServerService, ServerStatus, type Bootstrap, type InstallToken, type Server } from "../gen/myosicam/panel/v1/server_pb.js";
import { isoOf, printJson } from "./context.js";
import { findServer, panelApi } from "./panel-client.js";

const lower = (name: string) => name.toLowerCase();

const tokenStates: Record<InstallTokenState, string> = {
  [InstallTokenState.UNSPECIFIED]: "unknown",
  [InstallTokenState.ISSUED]: "issued",
  [InstallTokenState.EXPIRED]: "expired",
  [InstallTokenState.CONSUMED]: "consumed",
  [InstallTokenState.REVOKED]: "revoked",
};

/** `ServerStatus.ONLINE` → `online`. */
export const serverStatusName = (s: ServerStatus) => lower(ServerStatus[s] ?? "unknown");

function tokenJson(t: InstallToken) {
  return {
    hashPrefix: t.hashPrefix,
    server: t.serverName,
    serverId: t.serverId,
    state: tokenStates[t.state],
    createdBy: t.createdBy,
    createdAt: isoOf(t.createdAt),
    expiresAt: isoOf(t.expiresAt),
    consumedAt: isoOf(t.consumedAt),
  };
}

/** Every server in scope, page by page. */
export async function allServers(servers: Client<typeof ServerService>): Promise<Server[]> {
  const all: Server[] = [];
  let pageToken = "";
  do {
    const page = await servers.listServers({ pageSize: 500, pageToken });
    all.push(...page.servers);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return all;
}

/** `token create`: a new server and its bootstrap, or a re-run of an existing server's bootstrap. */
export async function tokenCreateCommand(options: { server: string; ttlSeconds: number; json: boolean }): Promise<void> {
  const api = await panelApi();
  const servers = api.client(ServerService);
  const [existing] = (await servers.listServers({ filter: { name: options.server }, pageSize: 1 })).servers;
  let bootstrap: Bootstrap | undefined;
  let server: { id: string; name: string };
  if (existing) {
    bootstrap = (await servers.rerunBootstrap({ serverId: existing.id, tokenTtlSeconds: options.ttlSeconds })).bootstrap;
    server = existing;
  } else {
    const added = await servers.addServer({ name: options.server, tokenTtlSeconds: options.ttlSeconds });
    bootstrap = added.bootstrap;
    server = added.server!;
  }
  const b = bootstrap!;
  if (options.json)
    return printJson({
      token: b.installToken,
      server: server.name,
      serverId: server.id,
      hashPrefix: b.tokenHashPrefix,
      expiresAt: isoOf(b.expiresAt),
      panelUrl: b.panelUrl,
      fingerprint: b.panelFingerprint,
      command: b.command,
    });
  process.stdout.write(
    `install token for server ${server.name} (valid until ${isoOf(b.expiresAt)}, single use; shown once):\n${b.installToken}\n\n` +
      `on the OScam server, as root, with deploy/bootstrap.sh of this repository:\n  ${b.command}\n` +
      (existing ? "when the agent registers with it, the server's earlier agent token stops working\n" : ""),
  );
}

export async function tokenListCommand(options: { json: boolean }): Promise<void> {
  const { tokens } = await (await panelApi()).client(ServerService).listInstallTokens({});
  if (options.json) return printJson({ tokens: tokens.map(tokenJson) });
  const lines = tokens.map(
    (t) =>
      `${t.hashPrefix}  ${tokenStates[t.state].padEnd(8)} ${t.serverName.padEnd(20)} created ${isoOf(t.createdAt)} by ${t.createdBy}, expires ${isoOf(t.expiresAt)}${t.consumedAt ? `, used ${isoOf(t.consumedAt)}` : ""}`,
  );
  process.stdout.write(lines.length ? lines.join("\n") + "\n" : "no install tokens\n");
}

export async function tokenRevokeCommand(prefix: string, options: { json: boolean }): Promise<void> {
  if (!/^[0-9a-f]{8,64}$/.test(prefix))
    throw new ConnectError("give the token's hash prefix as `token list` shows it (8 hex characters)", Code.InvalidArgument);
  const { token } = await (await panelApi()).client(ServerService).revokeInstallToken({ hashPrefix: prefix });
  if (options.json) return printJson({ token: tokenJson(token!) });
  process.stdout.write(`install token ${token!.hashPrefix} for ${token!.serverName} revoked\n`);
}

export function agentJson(s: Server) {
  return {
    id: s.id,
    name: s.name,
    status: serverStatusName(s.status),
    approved: s.approved,
    tags: s.tags,
    hostname: s.hostname || null,
    ip: s.ip || null,
    reportedIp: s.reportedIp || null,
    os: s.os || null,
    osVersion: s.osVersion || null,
    arch: s.arch || null,
    agentVersion: s.agentVersion || null,
    registeredAt: isoOf(s.registeredAt),
    lastSeenAt: isoOf(s.lastSeenAt),
    unreachableSince: isoOf(s.unreachableSince),
    instances: s.instanceCount,
    runningInstances: s.runningInstanceCount,
  };
}

export async function agentListCommand(options: { json: boolean }): Promise<void> {
  const servers = await allServers((await panelApi()).client(ServerService));
  if (options.json) return printJson({ agents: servers.map(agentJson) });
  const lines = servers.map(
    (s) =>
      `${s.id}  ${s.name.padEnd(20)} ${serverStatusName(s.status).padEnd(11)} ${(s.hostname || "-").padEnd(20)} ${(s.agentVersion || "-").padEnd(8)} last seen ${isoOf(s.lastSeenAt) ?? "never"}`,
  );
  process.stdout.write(lines.length ? lines.join("\n") + "\n" : "no servers yet: npx myosicam token create --server <name>\n");
}

function checkId(id: string): string {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) {
    throw new ConnectError(`"${id}" is not a server id; see \`npx myosicam agent list\``, Code.InvalidArgument);
  }
  return id;
}

/** One server's result of a bulk call: its row, or the refusal in words (exit 1). */
function singleResult(results: Array<{ ok: boolean; error: string; server?: Server }>, id: string): Server {
  const result = results[0];
  if (!result?.ok || !result.server) {
    throw new ConnectError(`${result?.error ?? `no server ${id}`}; see \`npx myosicam agent list\``, result?.server ? Code.FailedPrecondition : Code.NotFound);
  }
  return result.server;
}

export async function agentApproveCommand(id: string, options: { json: boolean }): Promise<void> {
  const { results } = await (await panelApi()).client(ServerService).approveServers({ serverIds: [checkId(id)] });
  const server = singleResult(results, id);
  if (options.json) return printJson({ agent: agentJson(server) });
  process.stdout.write(`agent of ${server.name} approved: it may sync and receive commands\n`);
}

export async function agentRevokeCommand(id: string, options: { json: boolean }): Promise<void> {
  const { results } = await (await panelApi()).client(ServerService).revokeServers({ serverIds: [checkId(id)] });
  const server = singleResult(results, id);
  if (options.json) return printJson({ agent: agentJson(server) });
  process.stdout.write(`agent of ${server.name} revoked: its next call is refused; a new install token re-enrolls it\n`);
}

const commandStatusName = (s: CommandStatus) => lower(CommandStatus[s] ?? "unknown");
const commandKindName = (k: CommandKind) => lower(CommandKind[k] ?? "unknown");

function commandJson(c: Command) {
  return {
    id: c.id,
    serverId: c.serverId,
    server: c.serverName,
    instance: c.instance,
    kind: commandKindName(c.kind),
    status: commandStatusName(c.status),
    result: c.result,
    failureCode: c.failureCode,
    createdBy: c.createdBy,
    createdAt: isoOf(c.createdAt),
    deliveredAt: isoOf(c.deliveredAt),
    finishedAt: isoOf(c.finishedAt),
    deadline: isoOf(c.deadline),
  };
}

/**
 * The payload of `command send`: `--payload <json>`, `--payload -` (stdin) or `--payload-file
 * <path>`, for payloads too large for an argument list (thousands of account changes).
 */
async function readPayload(options: { payload?: string; payloadFile?: string }): Promise<JsonValue | undefined> {
  if (options.payload !== undefined && options.payloadFile !== undefined)
    throw new ConnectError("give --payload or --payload-file, not both", Code.InvalidArgument);
  let text: string;
  let from: string;
  if (options.payloadFile !== undefined) {
    from = `--payload-file ${options.payloadFile}`;
    try {
      text = await readFile(options.payloadFile, "utf8");
    } catch (err) {
      throw new ConnectError(`${from} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, Code.InvalidArgument);
    }
  } else if (options.payload === "-") {
    from = "the payload on stdin";
    if (process.stdin.isTTY)
      throw new ConnectError("--payload - reads the payload from stdin: pipe it in, e.g. `… --payload - < changes.json`", Code.InvalidArgument);
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    text = Buffer.concat(chunks).toString("utf8");
  } else if (options.payload !== undefined) {
    from = "--payload";
    text = options.payload;
  } else return undefined;
  try {
    return JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new ConnectError(`${from} is not JSON: ${(err as Error).message}`, Code.InvalidArgument);
  }
}

/** `apply_accounts` → CommandKind.APPLY_ACCOUNTS: the kinds are the enum's names in lower case. */
const kinds: Record<string, CommandKind> = Object.fromEntries(
  Object.entries(CommandKind)
    .filter((e): e is [string, CommandKind] => typeof e[1] === "number" && e[1] !== CommandKind.UNSPECIFIED)
    .map(([name, value]) => [name.toLowerCase(), value]),
);

/** The request's kind and typed payload from the command line's words and JSON. */
function commandPayload(kind: string, payload: JsonValue | undefined): Pick<MessageInitShape<typeof SendCommandRequestSchema>, "kind" | "payload"> {
  const value = kinds[kind];
  if (value === undefined) throw new ConnectError(`kind must be one of ${Object.keys(kinds).join(", ")}, got "${kind}"`, Code.InvalidArgument);
  const parse = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      throw new ConnectError(`payload: ${(err as Error).message}`, Code.InvalidArgument);
    }
  };
  if (value === CommandKind.APPLY_ACCOUNTS) {
    return { kind: value, payload: { case: "applyAccounts", value: parse(() => fromJson(ApplyAccountsSchema, payload ?? {})) } };
  }
  if (value === CommandKind.APPLY_CONFIG) {
    return { kind: value, payload: { case: "applyConfig", value: parse(() => fromJson(ApplyConfigSchema, payload ?? {})) } };
  }
  if (value === CommandKind.UPGRADE_AGENT) {
    return { kind: value, payload: { case: "upgradeAgent", value: parse(() => fromJson(UpgradeAgentSchema, payload ?? {})) } };
  }
  if (payload !== undefined && payload !== null && !(typeof payload === "object" && Object.keys(payload).length === 0)) {
    throw new ConnectError(`${kind} takes no payload`, Code.InvalidArgument);
  }
  return { kind: value };
}

/** `command send`: one command for a server (by id or name); `--wait` until it finished. */
export async function commandSendCommand(options: {
  server: string;
  instance?: string;
  kind: string;
  payload?: string;
  payloadFile?: string;
  wait: boolean;
  json: boolean;
}): Promise<void> {
  const payload = commandPayload(options.kind, await readPayload(options));
  const api = await panelApi();
  const server = await findServer(api, options.server);
  const commands = api.client(CommandService);
  let [command] = (await commands.sendCommand({ targets: [{ serverId: server.id, instance: options.instance ?? "" }], ...payload })).commands;
  if (options.wait) {
    // Read to the stream's end (the panel ends it once the command is final): leaving it early
    // would keep its HTTP/2 stream, and so this process, alive.
    for await (const update of commands.watchCommands({ commandIds: [command!.id] }, { timeoutMs: 0 })) {
      command = update.commands.find((c) => c.id === command!.id) ?? command;
    }
  }
  // The exit code says whether a waited-for command succeeded, whatever the output format.
  if (options.wait && command!.status !== CommandStatus.SUCCEEDED) process.exitCode = 1;
  if (options.json) return printJson({ command: commandJson(command!) });
  process.stdout.write(
    `command ${command!.id} (${commandKindName(command!.kind)}) for ${server.name}: ${commandStatusName(command!.status)}${command!.result ? ` — ${command!.result}` : ""}\n`,
  );
}

export async function commandListCommand(options: { json: boolean }): Promise<void> {
  const { commands } = await (await panelApi()).client(CommandService).listCommands({ pageSize: 100 });
  if (options.json) return printJson({ commands: commands.map(commandJson) });
  const lines = commands.map(
    (c) =>
      `${c.id}  ${commandKindName(c.kind).padEnd(14)} ${commandStatusName(c.status).padEnd(9)} server ${c.serverName}${c.instance ? `/${c.instance}` : ""}  ${isoOf(c.createdAt)}${c.result ? `  ${c.result}` : ""}`,
  );
  process.stdout.write(lines.length ? lines.join("\n") + "\n" : "no commands\n");
}

/**
 * `agent upgrade --version <v> <server...>`: an upgrade_agent command for each server (by id or
 * name); `--wait` until every agent heartbeats in the new version, or failed (exit 1 then).
 */
export async function agentUpgradeCommand(servers: string[], options: { version: string; wait: boolean; json: boolean }): Promise<void> {
  const api = await panelApi();
  const targets = [];
  for (const name of servers) targets.push({ serverId: (await findServer(api, name)).id, instance: "" });
  const commands = api.client(CommandService);
  let sent = (await commands.sendCommand({ targets, kind: CommandKind.UPGRADE_AGENT, payload: { case: "upgradeAgent", value: { version: options.version } } }))
    .commands;
  if (options.wait) {
    const latest = new Map(sent.map((c) => [c.id, c]));
    for await (const update of commands.watchCommands({ commandIds: [...latest.keys()] }, { timeoutMs: 0 })) {
      for (const c of update.commands) latest.set(c.id, c);
    }
    sent = [...latest.values()];
  }
  if (options.wait && sent.some((c) => c.status !== CommandStatus.SUCCEEDED)) process.exitCode = 1;
  if (options.json) return printJson({ commands: sent.map(commandJson) });
  for (const c of sent) {
    process.stdout.write(`${c.serverName}: upgrade to ${options.version} ${commandStatusName(c.status)}${c.result ? ` — ${c.result}` : ""}\n`);
  }
}
