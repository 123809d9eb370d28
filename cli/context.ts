import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { loadConfig, readEnv, type Config } from "../services/lib/config.js";
import { appendSetting, configFilePath, generateKeyHex } from "../services/lib/config-file.js";
import { createLogger, type Logger } from "../services/lib/log.js";
import { terminalDestination } from "../services/lib/log-terminal.js";
import { generateCallerSecret, generateLicenseKey } from "../services/admin/index.js";

/** Settings a first start may generate into the configuration file. */
export type GeneratedSetting = "PANEL_ENCRYPTION_KEY" | "ADMIN_ENCRYPTION_KEY" | "PANEL_CALLER_SECRET" | "PANEL_LICENSE_KEY" | "METRICS_TOKEN";

const generators: Record<GeneratedSetting, { value: () => string; why: string }> = {
  PANEL_ENCRYPTION_KEY: { value: generateKeyHex, why: "back this file up: without the key, stored secrets are lost" },
  ADMIN_ENCRYPTION_KEY: { value: generateKeyHex, why: "admin's key for caller secrets; back this file up" },
  PANEL_CALLER_SECRET: { value: generateCallerSecret, why: "the panel signs its calls to admin with this (caller PANEL_CALLER_ID)" },
  PANEL_LICENSE_KEY: { value: generateLicenseKey, why: "a development license; replace it with the key your vendor issued" },
  METRICS_TOKEN: { value: generateKeyHex, why: "the bearer token a Prometheus scraper sends to GET /metrics" },
};

/** What every command starts from: the validated configuration and the root logger. */
export interface CommandContext {
  config: Config;
  log: Logger;
  /** Settings this start generated, and the file they were written to. */
  generated?: { file: string; settings: GeneratedSetting[] };
}

export interface ContextOptions {
  /**
   * Settings to generate and store in the configuration file when they are not configured (what
   * a first `npm start` needs). Services refuse to start when stored secrets were sealed with
   * another key, so this never silently replaces a lost key.
   */
  generate?: readonly GeneratedSetting[];
  /** `up` only: admin sets up the panel's caller and a development license (see Config). */
  developmentTrust?: boolean;
}

/** Reads `config/.env` and the environment once, validates, and creates the root logger. */
export async function createCommandContext(options: ContextOptions = {}, processEnv: NodeJS.ProcessEnv = process.env): Promise<CommandContext> {
  let env = readEnv(processEnv);
  const missing = (options.generate ?? []).filter((name) => !env[name]?.trim());
  let generated: CommandContext["generated"];
  // Validate everything else first: a bad setting must not leave a key file behind it.
  if (missing.length > 0 && loadConfig(env)) {
    const file = configFilePath(processEnv);
    const at = new Date().toISOString();
    for (const name of missing) {
      const value = generators[name].value();
      await appendSetting(file, name, value, `generated on first start ${at}; ${generators[name].why}`);
      env = { ...env, [name]: value };
    }
    generated = { file, settings: missing };
  }
  const config = { ...loadConfig(env), developmentTrust: Boolean(options.developmentTrust) };
  return { config, log: createLogger({ level: config.logLevel, destination: terminalDestination() }), generated };
}

/** A Timestamp of an API answer as ISO 8601 text, or null when unset (what `--json` prints). */
export const isoOf = (t: Timestamp | undefined): string | null => (t ? timestampDate(t).toISOString() : null);

/** Prints exactly one JSON object on stdout (what `--json` promises scripts). */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + "\n");
}
