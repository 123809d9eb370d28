import { Code, ConnectError } from "@connectrpc/connect";
import { ViolationsSchema, type FieldPath } from "../gen/buf/validate/validate_pb.js";
import { ConfigError } from "../services/lib/config.js";

/** `changes[0].operation`: a violation's field path as a person reads it. */
function pathText(path: FieldPath | undefined): string {
  return (path?.elements ?? [])
    .map((e) => {
      const key =
        e.subscript.case === undefined ? "" : e.subscript.case === "index" ? `[${e.subscript.value}]` : `[${JSON.stringify(String(e.subscript.value))}]`;
      return `${e.fieldName}${key}`;
    })
    .join(".");
}

/**
 * The one line a failed command prints: the panel's words, and for bad input every field that
 * was refused (not only the first), as the request's validation listed them.
 */
export function errorLine(err: unknown): string {
  if (err instanceof ConfigError) return `configuration error: ${err.message}`;
  if (!(err instanceof ConnectError)) return err instanceof Error ? err.message : String(err);
  if (err.code === Code.InvalidArgument) {
    const violations = err.findDetails(ViolationsSchema).flatMap((d) => d.violations);
    if (violations.length > 1) return violations.map((v) => `${pathText(v.field)}: ${v.message}`).join("; ");
  }
  return err.rawMessage;
}
