import type { DestinationStream } from "pino";
import pretty from "pino-pretty";

/** Readable, coloured log lines when stderr is a terminal; undefined (JSON lines) otherwise. */
export function terminalDestination(): DestinationStream | undefined {
  return process.stderr.isTTY ? pretty({ destination: 2, sync: true }) : undefined;
}
