import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../services/lib/log.js";

/** A logger configured exactly like production's (redaction included) that keeps its lines. */
export function captureLogs(): { log: Logger; lines(): Array<Record<string, unknown>>; text(): string } {
  let text = "";
  const destination = new Writable({
    write(chunk, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  const log = createLogger({ level: "debug", destination });
  return {
    log,
    text: () => text,
    lines: () =>
      text
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}
