import { loadConfig, readEnv, type Config } from "../services/lib/config.js";
import { createLogger, type Logger } from "../services/lib/log.js";

/** What every command starts from: the validated configuration and the root logger. */
export interface CommandContext {
  config: Config;
  log: Logger;
}

/** Reads `config/.env` and the environment once, validates, and creates the root logger. */
export function createCommandContext(env: NodeJS.ProcessEnv = process.env): CommandContext {
  const config = loadConfig(readEnv(env));
  return { config, log: createLogger({ level: config.logLevel }) };
}

/** Prints exactly one JSON object on stdout (what `--json` promises scripts). */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + "\n");
}
