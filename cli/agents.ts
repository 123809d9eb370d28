import { readFile } from "node:fs/promises";
import { randomUUID } from "node:crypto";
import { userInfo } from "node:os";
import type { Knex } from "knex";
import type { JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { CryptoService } from "../gen/myosicam/crypto/v1/crypto_pb.js";
import { createCommands, listCommands, waitForCommands, type CommandInfo } from "../services/agents/commands.js";
import { createCryptoService } from "../services/crypto/service.js";
import { keyringFromConfig } from "../services/crypto/index.js";
import { createInstallToken, listInstallTokens, revokeInstallTokenByPrefix, type InstallTokenInfo } from "../services/agents/install-tokens.js";
import { approveServer, revokeServer, selectServers, type ServerRow } from "../services/agents/store.js";
import { publicKeyPin } from "../services/install/install-job.js";
import { writeMailSettings, type MailSettingsInput } from "../services/lib/email/settings.js";
import { loadTlsIdentity } from "../services/lib/tls.js";
import { createCommandContext, printJson, type CommandContext } from "./context.js";
import { withDatabase } from "./database.js";
import { readStdin } from "./stdin.js";

const actor = () => `cli:${userInfo().username}`;
const iso = (d: Date | null | undefined) => (d ? new Date(d).toISOString() : null);

async function onPanel<T>(fn: (db: Knex, context: CommandContext) => Promise<T>): Promise<T> {
  const context = await createCommandContext();
  return withDatabase(context, "panel", (db) => fn(db, context));
}

function tokenJson(t: InstallTokenInfo) {
  return { ...t, createdAt: iso(t.createdAt), expiresAt: iso(t.expiresAt), consumedAt: iso(t.consumedAt) };
}

/** `token create`: prints the token once and the bootstrap command that uses it. */
export async function tokenCreateCommand(options: { server: string; ttlSeconds: number; json: boolean }): Promise<void> {
  await onPanel(async (db, context) => {
    const { token, info } = await createInstallToken(db, { server: options.server, ttlSeconds: options.ttlSeconds, createdBy: actor() });
    const { config } = context;
    const tls = await loadTlsIdentity({ dataDir: config.dataDir, certFile: config.tls.certFile, keyFile: config.tls.keyFile, names: [config.panel.host] });
    const panelUrl = config.panelPublicUrl ?? `https://${config.panel.host === "0.0.0.0" ? "<panel address>" : config.panel.host}:${config.panel.port}`;
    // Through stdin, so the token never shows in the target's process list.
    const command =
      `printf '%s\\n' '${token}' | MYOSICAM_PANEL_URL=${panelUrl} MYOSICAM_PANEL_FINGERPRINT=${tls.fingerprint} ` +
      `MYOSICAM_PANEL_PUBKEY_PIN='${publicKeyPin(tls.cert)}' sh bootstrap.sh`;
    if (options.json)
      return printJson({
        token,
        server: info.server,
        serverId: info.serverId,
        hashPrefix: info.hashPrefix,
        expiresAt: iso(info.expiresAt),
        panelUrl,
        fingerprint: tls.fingerprint,
        command,
      });
    process.stdout.write(
      `install token for server ${info.server} (valid until ${iso(info.expiresAt)}, single use; shown once):\n${token}\n\n` +
        `on the OScam server, as root, with deploy/bootstrap.sh of this repository:\n  ${command}\n`,
    );
  });
}

export async function tokenListCommand(options: { json: boolean }): Promise<void> {
  await onPanel(async (db) => {
    const tokens = await listInstallTokens(db);
    if (options.json) return printJson({ tokens: tokens.map(tokenJson) });
    const lines = tokens.map(
      (t) =>
        `${t.hashPrefix}  ${t.state.padEnd(8)} ${t.server.padEnd(20)} created ${iso(t.createdAt)} by ${t.createdBy}, expires ${iso(t.expiresAt)}${t.consumedAt ? `, used ${iso(t.consumedAt)}` : ""}`,
    );
    process.stdout.write(lines.length ? lines.join("\n") + "\n" : "no install tokens\n");
  });
}

export async function tokenRevokeCommand(prefix: string, options: { json: boolean }): Promise<void> {
  await onPanel(async (db) => {
    const info = await revokeInstallTokenByPrefix(db, prefix);
    if (options.json) return printJson({ token: tokenJson(info) });
    process.stdout.write(`install token ${info.hashPrefix} for ${info.server} revoked\n`);
  });
}

function agentJson(s: ServerRow) {
  return {
    id: s.id,
    name: s.name,
    status: s.status,
    approved: s.approved,
    hostname: s.hostname,
    ip: s.seen_ip,
    reportedIp: s.reported_ip,
    os: s.os,
    osVersion: s.os_version,
    arch: s.arch,
    agentVersion: s.agent_version,
    registeredAt: iso(s.registered_at),
    lastSeenAt: iso(s.last_seen_at),
    unreachableSince: iso(s.unreachable_since),
  };
}

export async function agentListCommand(options: { json: boolean }): Promise<void> {
  await onPanel(async (db) => {
    const servers = await selectServers(db);
    if (options.json) return printJson({ agents: servers.map(agentJson) });
    const lines = servers.map(
      (s) =>
        `${s.id}  ${s.name.padEnd(20)} ${s.status.padEnd(11)} ${(s.hostname ?? "-").padEnd(20)} ${(s.agent_version ?? "-").padEnd(8)} last seen ${iso(s.last_seen_at) ?? "never"}`,
    );
    process.stdout.write(lines.length ? lines.join("\n") + "\n" : "no servers yet: npx myosicam token create --server <name>\n");
  });
}

export async function agentApproveCommand(id: string, options: { json: boolean }): Promise<void> {
  await onPanel(async (db) => {
    const row = await approveServer(db, checkId(id));
    if (!row) throw new ConnectError(`no server ${id} that can be approved (unknown or revoked); see \`npx myosicam agent list\``, Code.NotFound);
    if (options.json) return printJson({ agent: agentJson(row) });
    process.stdout.write(`agent of ${row.name} approved: it may sync and receive commands\n`);
  });
}

export async function agentRevokeCommand(id: string, options: { json: boolean }): Promise<void> {
  await onPanel(async (db) => {
    const row = await revokeServer(db, checkId(id));
    if (!row) throw new ConnectError(`no server ${id}; see \`npx myosicam agent list\``, Code.NotFound);
    if (options.json) return printJson({ agent: agentJson(row) });
    process.stdout.write(`agent of ${row.name} revoked: its next call is refused; a new install token re-enrolls it\n`);
  });
}

function checkId(id: string): string {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) {
    throw new ConnectError(`"${id}" is not a server id; see \`npx myosicam agent list\``, Code.InvalidArgument);
  }
  return id;
}

const emailPattern = /^[^\s@]{1,64}@[^\s@]{1,255}$/;

function checkAddresses(from: string, to: string[]): void {
  for (const address of [from, ...to]) {
    if (!emailPattern.test(address)) throw new ConnectError(`"${address}" is not an e-mail address`, Code.InvalidArgument);
  }
}

/** `email smtp|mailgun|off`: the route of alert e-mails; secrets are read from stdin and sealed. */
export async function emailSetCommand(input: MailSettingsInput & { secretFromStdin: boolean }, options: { json: boolean }): Promise<void> {
  if (input.provider !== "none") checkAddresses(input.from ?? "", input.recipients);
  const secret = input.secretFromStdin ? await readStdin() : undefined;
  const settings: MailSettingsInput = {
    ...input,
    smtp: input.smtp && { ...input.smtp, password: secret ?? input.smtp.password },
    mailgun: input.mailgun && { ...input.mailgun, apiKey: secret ?? input.mailgun.apiKey },
  };
  if (settings.mailgun && !settings.mailgun.apiKey) throw new ConnectError("pass the Mailgun API key on stdin with --api-key-stdin", Code.InvalidArgument);
  await onPanel(async (db, context) => {
    const keyring = keyringFromConfig(context.config);
    await writeMailSettings(
      db,
      settings,
      async (plaintext, column, rowId) => keyring.seal(Buffer.from(plaintext, "utf8"), { table: "email_settings", column, rowId }),
      randomUUID(),
    );
    if (options.json) return printJson({ provider: settings.provider, recipients: settings.recipients });
    process.stdout.write(
      settings.provider === "none"
        ? "alert e-mail is off; alerts stay in the console\n"
        : `alert e-mail goes through ${settings.provider} to ${settings.recipients.join(", ")}\n`,
    );
  });
}

function commandJson(c: CommandInfo) {
  return { ...c, createdAt: iso(c.createdAt), deliveredAt: iso(c.deliveredAt), finishedAt: iso(c.finishedAt), deadline: iso(c.deadline) };
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
  const payload = await readPayload(options);
  await onPanel(async (db, context) => {
    const server = (await selectServers(db)).find((s) => s.id === options.server || s.name === options.server);
    if (!server) throw new ConnectError(`no server "${options.server}"; see \`npx myosicam agent list\``, Code.NotFound);
    const crypto = createClient(
      CryptoService,
      createRouterTransport((router) => router.service(CryptoService, createCryptoService({ keyring: keyringFromConfig(context.config), db }))),
    );
    let [command] = await createCommands(db, crypto, { serverIds: [server.id], instance: options.instance, kind: options.kind, payload, createdBy: actor() });
    if (options.wait) [command] = await waitForCommands(db, [command!.id], 15 * 60_000);
    // The exit code says whether a waited-for command succeeded, whatever the output format.
    if (options.wait && command!.status !== "succeeded") process.exitCode = 1;
    if (options.json) return printJson({ command: commandJson(command!) });
    process.stdout.write(`command ${command!.id} (${command!.kind}) for ${server.name}: ${command!.status}${command!.result ? ` — ${command!.result}` : ""}\n`);
  });
}

export async function commandListCommand(options: { json: boolean }): Promise<void> {
  await onPanel(async (db) => {
    const commands = await listCommands(db);
    if (options.json) return printJson({ commands: commands.map(commandJson) });
    const lines = commands.map(
      (c) =>
        `${c.id}  ${c.kind.padEnd(14)} ${c.status.padEnd(9)} server ${c.serverId}${c.instance ? `/${c.instance}` : ""}  ${iso(c.createdAt)}${c.result ? `  ${c.result}` : ""}`,
    );
    process.stdout.write(lines.length ? lines.join("\n") + "\n" : "no commands\n");
  });
}
