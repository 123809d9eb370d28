import { userInfo } from "node:os";
import type { Knex } from "knex";
import { adminCallers, createLicenseBook, createOperatorDesk, insertAudit, type CallerInfo, type LicenseInfo, type Plan } from "../services/admin/index.js";
import { createCommandContext, printJson, type CommandContext } from "./context.js";
import { withDatabase } from "./database.js";
import { readPassword } from "./stdin.js";

/** Who the audit trail names for a command run on the admin host. */
const cliActor = () => `cli:${userInfo().username}`;

async function onAdmin<T>(fn: (db: Knex, context: CommandContext) => Promise<T>): Promise<T> {
  const context = await createCommandContext();
  return withDatabase(context, "admin", (db) => fn(db, context));
}

const audit = (db: Knex, action: string, target: string) => insertAudit(db, { actor: cliActor(), action, target });

const iso = (d: Date | null | undefined) => (d ? new Date(d).toISOString() : null);

function callerJson(c: CallerInfo) {
  return { ...c, createdAt: iso(c.createdAt), rotatedAt: iso(c.rotatedAt), previousSecretValidUntil: iso(c.previousSecretValidUntil) };
}

function callerLine(c: CallerInfo): string {
  const previous = c.previousSecretValidUntil ? `, old secret valid until ${iso(c.previousSecretValidUntil)}` : "";
  return `${c.id.padEnd(20)} ${c.status.padEnd(8)} ${c.allowedProcedures.join(" ")}${previous}${c.description ? `  (${c.description})` : ""}`;
}

export async function callerCreateCommand(id: string, options: { allow: string[]; description?: string; json: boolean }): Promise<void> {
  await onAdmin(async (db, context) => {
    const { caller, secret } = await adminCallers(db, context.config).create({ id, description: options.description, allowedProcedures: options.allow });
    await audit(db, "caller.create", caller.id);
    if (options.json) return printJson({ caller: callerJson(caller), secret });
    process.stdout.write(
      `caller ${caller.id} created, allowed: ${caller.allowedProcedures.join(" ")}\n` +
        `secret (shown once; give it to the caller, e.g. PANEL_CALLER_SECRET):\n${secret}\n`,
    );
  });
}

export async function callerListCommand(options: { json: boolean }): Promise<void> {
  await onAdmin(async (db, context) => {
    const callers = await adminCallers(db, context.config).list();
    if (options.json) return printJson({ callers: callers.map(callerJson) });
    process.stdout.write(callers.length ? callers.map(callerLine).join("\n") + "\n" : "no callers\n");
  });
}

export async function callerStatusCommand(id: string, status: "active" | "inactive", options: { json: boolean }): Promise<void> {
  await onAdmin(async (db, context) => {
    const caller = await adminCallers(db, context.config).setStatus(id, status);
    await audit(db, status === "active" ? "caller.activate" : "caller.revoke", id);
    if (options.json) return printJson({ caller: callerJson(caller) });
    process.stdout.write(status === "active" ? `caller ${id} is active again\n` : `caller ${id} revoked: its next request is refused\n`);
  });
}

export async function callerRotateCommand(id: string, options: { overlapSeconds: number; json: boolean }): Promise<void> {
  await onAdmin(async (db, context) => {
    const { caller, secret } = await adminCallers(db, context.config).rotate(id, options.overlapSeconds);
    await audit(db, "caller.rotate", id);
    if (options.json) return printJson({ caller: callerJson(caller), secret });
    const old = caller.previousSecretValidUntil
      ? `the old secret stays valid until ${iso(caller.previousSecretValidUntil)}`
      : "the old secret is refused from now on";
    process.stdout.write(`caller ${id} has a new secret; ${old}\nnew secret (shown once):\n${secret}\n`);
  });
}

function planJson(p: Plan) {
  return { ...p, monthlyPriceMinor: p.monthlyPriceMinor.toString() };
}

const limit = (n: number) => (n === 0 ? "unlimited" : String(n));

export async function planSetCommand(
  id: string,
  options: { name: string; maxServers: number; maxInstances: number; price: number; currency: string; feature: string[]; hidden: boolean; json: boolean },
): Promise<void> {
  await onAdmin(async (db) => {
    const plan = await createLicenseBook(db).setPlan({
      id,
      name: options.name,
      maxServers: options.maxServers,
      maxInstances: options.maxInstances,
      monthlyPriceMinor: BigInt(options.price),
      currency: options.currency.toUpperCase(),
      features: options.feature,
      public: !options.hidden,
    });
    await audit(db, "plan.set", plan.id);
    if (options.json) return printJson({ plan: planJson(plan) });
    process.stdout.write(
      `plan ${plan.id} saved: ${limit(plan.maxServers)} servers, ${limit(plan.maxInstances)} instances${plan.public ? "" : " (not in the public catalog)"}\n`,
    );
  });
}

export async function planListCommand(options: { json: boolean }): Promise<void> {
  await onAdmin(async (db) => {
    const plans = await createLicenseBook(db).plans();
    if (options.json) return printJson({ plans: plans.map(planJson) });
    const lines = plans.map(
      (p) =>
        `${p.id.padEnd(16)} ${p.name.padEnd(20)} servers ${limit(p.maxServers).padEnd(9)} instances ${limit(p.maxInstances).padEnd(9)} ` +
        `${(Number(p.monthlyPriceMinor) / 100).toFixed(2)} ${p.currency}/month${p.public ? "" : "  (hidden)"}`,
    );
    process.stdout.write(lines.length ? lines.join("\n") + "\n" : "no plans\n");
  });
}

function licenseJson(l: LicenseInfo) {
  return { ...l, expiresAt: iso(l.expiresAt), createdAt: iso(l.createdAt), revokedAt: iso(l.revokedAt), lastValidatedAt: iso(l.lastValidatedAt) };
}

export async function licenseIssueCommand(options: { plan: string; customer: string; expires?: Date; panelId?: string; json: boolean }): Promise<void> {
  await onAdmin(async (db) => {
    const { license, key } = await createLicenseBook(db).issue({
      customer: options.customer,
      planId: options.plan,
      expiresAt: options.expires ?? null,
      panelId: options.panelId,
    });
    await audit(db, "license.issue", license.id);
    if (options.json) return printJson({ license: licenseJson(license), licenseKey: key });
    process.stdout.write(
      `license ${license.id} issued to ${license.customer} on plan ${license.planId}, ` +
        `${license.expiresAt ? `expires ${iso(license.expiresAt)}` : "never expires"}\n` +
        `license key (shown once; the customer sets it as PANEL_LICENSE_KEY):\n${key}\n`,
    );
  });
}

export async function licenseListCommand(options: { json: boolean }): Promise<void> {
  await onAdmin(async (db) => {
    const licenses = await createLicenseBook(db).list();
    if (options.json) return printJson({ licenses: licenses.map(licenseJson) });
    const lines = licenses.map(
      (l) =>
        `${l.id}  ${l.keyHint}…  ${l.state.padEnd(8)} ${l.planId.padEnd(14)} ${l.customer}` +
        `${l.expiresAt ? `  expires ${iso(l.expiresAt)!.slice(0, 10)}` : ""}${l.panelId ? `  panel ${l.panelId}` : ""}` +
        `${l.lastUsage ? `  uses ${l.lastUsage.servers} servers/${l.lastUsage.instances} instances` : ""}`,
    );
    process.stdout.write(lines.length ? lines.join("\n") + "\n" : "no licenses\n");
  });
}

export async function licenseRevokeCommand(id: string, options: { reason: string; json: boolean }): Promise<void> {
  await onAdmin(async (db) => {
    await createLicenseBook(db).revoke(id, options.reason);
    await audit(db, "license.revoke", id);
    if (options.json) return printJson({ revoked: id });
    process.stdout.write(`license ${id} revoked: its panel is refused at its next check (within 6 hours, or at its next start)\n`);
  });
}

export async function operatorCreateCommand(options: { email: string; json: boolean }): Promise<void> {
  const password = await readPassword(`password for ${options.email} (at least 12 characters): `);
  await onAdmin(async (db) => {
    const operator = await createOperatorDesk(db).create(options.email, password);
    await audit(db, "operator.create", operator.email);
    if (options.json) return printJson({ operator });
    process.stdout.write(`admin operator ${operator.email} created; sign in with AdminService.Login on the admin listener\n`);
  });
}

export async function operatorPasswordCommand(options: { email: string; json: boolean }): Promise<void> {
  const password = await readPassword(`new password for ${options.email}: `);
  await onAdmin(async (db) => {
    await createOperatorDesk(db).setPassword(options.email, password);
    await audit(db, "operator.password", options.email.trim().toLowerCase());
    if (options.json) return printJson({ changed: options.email.trim().toLowerCase() });
    process.stdout.write(`password of ${options.email} changed\n`);
  });
}

export async function operatorListCommand(options: { json: boolean }): Promise<void> {
  await onAdmin(async (db) => {
    const operators = await createOperatorDesk(db).list();
    if (options.json) return printJson({ operators: operators.map((o) => ({ ...o, created_at: iso(o.created_at), disabled_at: iso(o.disabled_at) })) });
    process.stdout.write(operators.length ? operators.map((o) => `${o.email}${o.disabled_at ? " (disabled)" : ""}`).join("\n") + "\n" : "no admin operators\n");
  });
}
