import { randomBytes } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { writeFileAtomic } from "./atomic-file.js";
import { defaultConfigFile, type Env } from "./config.js";
import { weakKeyReason } from "./key-strength.js";

/** The configuration file `readEnv` reads for this environment. */
export function configFilePath(env: Env, cwd = process.cwd()): string {
  return resolve(cwd, env.MYOSICAM_CONFIG_FILE ?? defaultConfigFile);
}

/** 32 random bytes as 64 hex characters, never one that `weakKeyReason` would refuse. */
export function generateKeyHex(): string {
  for (;;) {
    const key = randomBytes(32);
    if (!weakKeyReason(key)) return key.toString("hex");
  }
}

/**
 * Appends `NAME=value` to the configuration file, creating it (and its directory, 0700) when
 * missing. The file is rewritten atomically with mode 0600: it holds keys.
 */
export async function appendSetting(file: string, name: string, value: string, comment: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  let text = "";
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  if (text.length > 0 && !text.endsWith("\n")) text += "\n";
  await writeFileAtomic(file, `${text}# ${comment}\n${name}=${value}\n`, 0o600);
}
