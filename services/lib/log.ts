import pino, { type DestinationStream, type Logger } from "pino";
import type { LogLevel } from "./config.js";

export type { Logger } from "pino";

/** Field names whose values are never written to a log, at any of the first three depths. */
export const secretFieldNames = [
  "password",
  "pwd",
  "secret",
  "token",
  "signature",
  "key",
  "privateKey",
  "apiKey",
  "authorization",
  "cookie",
  "installToken",
  "install_token",
  "agentToken",
  "agent_token",
  "encryptionKey",
  "encryptionKeyHex",
  "x-signature",
  "set-cookie",
  "oneTimePassword",
  "currentPassword",
  "newPassword",
] as const;

/** pino redaction paths built from `secretFieldNames`. */
export const redactPaths: string[] = secretFieldNames.flatMap((name) => {
  const field = /^[A-Za-z_$][\w$]*$/.test(name) ? `.${name}` : `["${name}"]`;
  return [field.startsWith(".") ? name : field, `*${field}`, `*.*${field}`];
});

export interface LoggerOptions {
  level: LogLevel;
  /** Where JSON lines go; default stderr, pretty-printed when it is a terminal. */
  destination?: DestinationStream;
}

/**
 * The one root logger of a process. Logs go to stderr so that stdout stays free for what a command
 * prints (one JSON object with `--json`). Every path in `redactPaths` is written as "[redacted]".
 */
export function createLogger(options: LoggerOptions): Logger {
  // JSON lines by default; commands pass `terminalDestination()` (log-terminal.ts) for a person at
  // a terminal. Kept apart so the agent does not load pino-pretty (≈10 MB of memory).
  const destination = options.destination ?? pino.destination({ fd: 2, sync: true });
  return pino(
    {
      level: options.level,
      base: { pid: process.pid },
      redact: { paths: redactPaths, censor: "[redacted]" },
      serializers: { err: pino.stdSerializers.errWithCause, cause: pino.stdSerializers.errWithCause },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
