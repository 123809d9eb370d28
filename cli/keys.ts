import { adminEncryptedColumns, adminKeyringFromConfig } from "../services/admin/index.js";
import { encryptedColumns, keyringFromConfig } from "../services/crypto/index.js";
import { deriveKey } from "../services/lib/secrets/keyring.js";
import { pendingRotation, rotateSecrets, type RotationProgress } from "../services/lib/secrets/rotate.js";
import { ConfigError } from "../services/lib/config.js";
import { generateKeyHex } from "../services/lib/config-file.js";
import type { DatabaseName } from "../services/lib/service-module.js";
import { createCommandContext, printJson, type CommandContext } from "./context.js";
import { withDatabase } from "./database.js";

/** `keys generate`: a fresh key, like `openssl rand -hex 32`, and the id it will be known by. */
export function keysGenerateCommand(options: { json: boolean }): void {
  const key = generateKeyHex();
  if (options.json) printJson({ key, keyId: deriveKey(key).id });
  else process.stdout.write(`${key}\n`);
}

/** The keyring, column registry and setting names of one database's secrets at rest. */
function secretsOf(context: CommandContext, database: DatabaseName) {
  return database === "admin"
    ? { keyring: adminKeyringFromConfig(context.config), columns: adminEncryptedColumns, setting: "ADMIN_ENCRYPTION_KEY" }
    : { keyring: keyringFromConfig(context.config), columns: encryptedColumns, setting: "PANEL_ENCRYPTION_KEY" };
}

/** `keys status`: the configured key ids and how many stored values each key sealed, per column. */
export async function keysStatusCommand(options: { json: boolean; database: DatabaseName }): Promise<void> {
  const context = await createCommandContext();
  const secrets = secretsOf(context, options.database);
  const { keyring } = secrets;
  const columns = await withDatabase(context, options.database, (db) => pendingRotation(db, keyring, secrets.columns));
  const report = { database: options.database, activeKeyId: keyring.activeKeyId, previousKeyId: keyring.previousKeyId ?? null, columns };
  if (options.json) return printJson(report);
  const out = [`active key   ${keyring.activeKeyId}`, `previous key ${keyring.previousKeyId ?? "(none)"}`];
  for (const c of columns) {
    const counts =
      Object.entries(c.byKeyId)
        .map(([id, n]) => `${id}: ${n}`)
        .join(", ") || "no values";
    out.push(`  ${c.table}.${c.column}: ${counts}${c.toRotate ? ` (${c.toRotate} not on the active key)` : ""}`);
  }
  process.stdout.write(out.join("\n") + "\n");
}

export interface RotateCommandOptions {
  json: boolean;
  database: DatabaseName;
  dryRun: boolean;
  batchSize: number;
  /** Fault injection for tests: SIGKILL this process after that many committed batches. */
  crashAfterBatches?: number;
}

/**
 * `keys rotate`: re-encrypts every registered column from PANEL_ENCRYPTION_KEY_PREVIOUS (or any
 * key it can open) to PANEL_ENCRYPTION_KEY, then decrypts everything to verify. Exit 1 when any
 * value failed.
 */
export async function keysRotateCommand(options: RotateCommandOptions): Promise<void> {
  const context = await createCommandContext();
  const { keyring, columns: registry, setting } = secretsOf(context, options.database);
  if (!keyring.previousKeyId && !options.dryRun) {
    throw new ConfigError(`${setting}_PREVIOUS`, `is not set: set it to the old key and ${setting} to the new one, then run this again`);
  }
  const progressOut = options.json ? process.stderr : process.stdout;
  await withDatabase(context, options.database, async (db) => {
    if (options.dryRun) {
      const columns = await pendingRotation(db, keyring, registry);
      const total = columns.reduce((n, c) => n + c.toRotate, 0);
      if (options.json) return printJson({ dryRun: true, activeKeyId: keyring.activeKeyId, toRotate: total, columns });
      for (const c of columns) process.stdout.write(`${c.table}.${c.column}: would re-encrypt ${c.toRotate}\n`);
      process.stdout.write(`dry run: ${total} values would be re-encrypted to key ${keyring.activeKeyId}; nothing was changed\n`);
      return;
    }
    const report = await rotateSecrets({
      db,
      keyring,
      columns: registry,
      batchSize: options.batchSize,
      onProgress: (p: RotationProgress) => progressOut.write(`${p.table}.${p.column}: ${p.rotated} re-encrypted, ${p.remaining} to go\n`),
      afterBatch: (n) => {
        if (options.crashAfterBatches !== undefined && n >= options.crashAfterBatches) process.kill(process.pid, "SIGKILL");
      },
    });
    const failures = [...report.failures, ...report.verification.failures];
    if (options.json) printJson({ ...report, ok: failures.length === 0 });
    else {
      process.stdout.write(`verified: ${report.verification.checked} values decrypt with the configured keys\n`);
      for (const f of failures) process.stdout.write(`FAILED ${f.table}.${f.column} row ${f.rowId}: ${f.reason}\n`);
      process.stdout.write(
        failures.length === 0
          ? `done: every value is on key ${report.activeKeyId}; you may now remove ${setting}_PREVIOUS\n`
          : `${failures.length} values could not be re-encrypted or verified; keep ${setting}_PREVIOUS\n`,
      );
    }
    if (failures.length > 0) process.exitCode = 1;
  });
}
