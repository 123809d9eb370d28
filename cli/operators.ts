import { userInfo } from "node:os";
import { Code, ConnectError } from "@connectrpc/connect";
import { AuthService } from "../gen/myosicam/panel/v1/auth_pb.js";
import { Role, type ServerScope } from "../gen/myosicam/panel/v1/common_pb.js";
import { OperatorService, type Operator } from "../gen/myosicam/panel/v1/operator_pb.js";
import { resetOperatorPassword } from "../services/panel/index.js";
import { generatePassword } from "../services/lib/passwords.js";
import { createCommandContext, isoOf, printJson } from "./context.js";
import { withDatabase } from "./database.js";
import { panelApi } from "./panel-client.js";
import { readStdin } from "./stdin.js";

export const roleNames: Record<string, Role> = { viewer: Role.VIEWER, operator: Role.OPERATOR, admin: Role.ADMIN, owner: Role.OWNER };
export const roleName = (r: Role) => Role[r]?.toLowerCase() ?? "unknown";

/** `--role` as the API's enum; InvalidArgument naming the choices. */
export function parseRole(role: string): Role {
  const value = roleNames[role];
  if (value === undefined) throw new ConnectError(`--role: viewer, operator, admin or owner (got "${role}")`, Code.InvalidArgument);
  return value;
}

/** `--server-id …` and `--tag …` as a scope (neither: every server). */
export const scopeOf = (serverIds: string[] = [], tags: string[] = []) => ({ serverIds, tags });
export const scopeText = (s: ServerScope | undefined) =>
  !s || (s.serverIds.length === 0 && s.tags.length === 0)
    ? "every server"
    : [...s.tags.map((t) => `tag ${t}`), ...s.serverIds.map((id) => `server ${id}`)].join(", ");

function operatorJson(o: Operator) {
  return {
    id: o.id,
    email: o.email,
    role: roleName(o.role),
    scope: { serverIds: o.scope?.serverIds ?? [], tags: o.scope?.tags ?? [] },
    disabled: o.disabled,
    mustChangePassword: o.mustChangePassword,
    createdBy: o.createdBy,
    createdAt: isoOf(o.createdAt),
    lastLoginAt: isoOf(o.lastLoginAt),
  };
}

/** The operator with this e-mail (or id), through the API. */
async function findOperator(emailOrId: string): Promise<Operator> {
  const { operators } = await (await panelApi()).client(OperatorService).listOperators({});
  const normal = emailOrId.trim().toLowerCase();
  const found = operators.find((o) => o.email === normal || o.id === emailOrId);
  if (!found) throw new ConnectError(`no operator ${emailOrId}; see \`npx myosicam operator list\``, Code.NotFound);
  return found;
}

export async function operatorListCommand(options: { json: boolean }): Promise<void> {
  const { operators } = await (await panelApi()).client(OperatorService).listOperators({});
  if (options.json) return printJson({ operators: operators.map(operatorJson) });
  const lines = operators.map(
    (o) =>
      `${o.email.padEnd(32)} ${roleName(o.role).padEnd(8)} ${o.disabled ? "disabled" : "active  "} ${scopeText(o.scope)}; last sign-in ${isoOf(o.lastLoginAt) ?? "never"}`,
  );
  process.stdout.write(`${lines.join("\n")}\n`);
}

export async function operatorCreateCommand(options: { email: string; role: string; serverId?: string[]; tag?: string[]; json: boolean }): Promise<void> {
  const res = await (await panelApi())
    .client(OperatorService)
    .createOperator({ email: options.email, role: parseRole(options.role), scope: scopeOf(options.serverId, options.tag) });
  if (options.json) return printJson({ operator: operatorJson(res.operator!), oneTimePassword: res.oneTimePassword });
  process.stdout.write(
    `operator ${res.operator!.email} created as ${roleName(res.operator!.role)} (${scopeText(res.operator!.scope)}).\n` +
      `one-time password (shown once; a new one is chosen at the first sign-in):\n${res.oneTimePassword}\n`,
  );
}

export async function operatorUpdateCommand(email: string, options: { role: string; serverId?: string[]; tag?: string[]; json: boolean }): Promise<void> {
  const operator = await findOperator(email);
  const res = await (await panelApi())
    .client(OperatorService)
    .updateOperator({ operatorId: operator.id, role: parseRole(options.role), scope: scopeOf(options.serverId, options.tag) });
  if (options.json) return printJson({ operator: operatorJson(res.operator!) });
  process.stdout.write(`operator ${res.operator!.email} is now ${roleName(res.operator!.role)} for ${scopeText(res.operator!.scope)}\n`);
}

export async function operatorDisableCommand(email: string, disabled: boolean, options: { json: boolean }): Promise<void> {
  const operator = await findOperator(email);
  const res = await (await panelApi()).client(OperatorService).setOperatorDisabled({ operatorId: operator.id, disabled });
  if (options.json) return printJson({ operator: operatorJson(res.operator!) });
  process.stdout.write(
    disabled ? `operator ${operator.email} disabled: their sessions and API clients ended\n` : `operator ${operator.email} may sign in again\n`,
  );
}

export async function operatorDeleteCommand(email: string, options: { json: boolean }): Promise<void> {
  const operator = await findOperator(email);
  await (await panelApi()).client(OperatorService).deleteOperator({ operatorId: operator.id });
  if (options.json) return printJson({ deleted: operator.id });
  process.stdout.write(`operator ${operator.email} deleted (their audit rows stay)\n`);
}

/**
 * `operator reset-password --email …`: on the panel host, straight in the database (the way back
 * in when no one can sign in). The new password is generated (or read from stdin) and must be
 * changed at the next sign-in.
 */
export async function operatorResetPasswordCommand(options: { email: string; passwordStdin: boolean; json: boolean }): Promise<void> {
  const password = options.passwordStdin ? await readStdin() : generatePassword(20);
  const context = await createCommandContext();
  await withDatabase(context, "panel", (db) =>
    resetOperatorPassword(db, options.email, password, `cli:${userInfo().username}`).catch((err: Error) => {
      throw new ConnectError(err.message, err instanceof ConnectError ? err.code : Code.NotFound);
    }),
  );
  if (options.json) return printJson({ email: options.email.trim().toLowerCase(), ...(options.passwordStdin ? {} : { password }) });
  process.stdout.write(
    `password of ${options.email.trim().toLowerCase()} reset; their sessions ended; a new one is chosen at the next sign-in.\n` +
      (options.passwordStdin ? "" : `password (shown once): ${password}\n`),
  );
}

/** `whoami`: who this CLI acts as. */
export async function whoAmICommand(options: { json: boolean }): Promise<void> {
  const api = await panelApi();
  const me = await api.client(AuthService).whoAmI({});
  const result = {
    panel: api.credential.panelUrl,
    kind: me.kind === 2 ? "api_client" : "operator",
    id: me.id,
    name: me.name,
    role: roleName(me.role),
    scope: scopeText(me.scope),
  };
  if (options.json) return printJson(result);
  process.stdout.write(`${result.name} (${result.kind} ${result.id}), ${result.role} of ${result.scope}, on ${result.panel}\n`);
}
