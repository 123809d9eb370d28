import { loadConfig, readEnv, type Config } from "../services/lib/config.js";
import { appendSetting, configFilePath, generateKeyHex } from "../services/lib/config-file.js";
import { createLogger, type Logger } from "../services/lib/log.js";

/** What every command starts from: the validated configuration and the root logger. */
export interface CommandContext {
  config: Config;
  log: Logger;
  /** Set when this start generated PANEL_ENCRYPTION_KEY and wrote it to that file. */
  generatedKeyFile?: string;
}

export interface ContextOptions {
  /**
   * When no PANEL_ENCRYPTION_KEY is configured, generate one and store it in the configuration
   * file (what a first `npm start` needs). The crypto service refuses to start if stored secrets
   * were sealed with another key, so this never silently replaces a lost key.
   */
  generateEncryptionKey?: boolean;
}

/** Reads `config/.env` and the environment once, validates, and creates the root logger. */
export async function createCommandContext(options: ContextOptions = {}, processEnv: NodeJS.ProcessEnv = process.env): Promise<CommandContext> {
  let env = readEnv(processEnv);
  let generatedIn: string | undefined;
  // Validate everything else first: a bad setting must not leave a key file behind it.
  if (options.generateEncryptionKey && !env.PANEL_ENCRYPTION_KEY && loadConfig(env)) {
    generatedIn = configFilePath(processEnv);
    const key = generateKeyHex();
    await appendSetting(generatedIn, "PANEL_ENCRYPTION_KEY", key, `generated on first start ${new Date().toISOString()}; back this file up: without the key, stored secrets are lost`);
    env = { ...env, PANEL_ENCRYPTION_KEY: key };
  }
  const config = loadConfig(env);
  return { config, log: createLogger({ level: config.logLevel }), generatedKeyFile: generatedIn };
}

/** Prints exactly one JSON object on stdout (what `--json` promises scripts). */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + "\n");
}
