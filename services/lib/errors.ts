import { Code, ConnectError } from "@connectrpc/connect";

/** PostgreSQL SQLSTATE codes that map to a code a caller can act on. */
const postgresCodes: Readonly<Record<string, { code: Code; message: string }>> = {
  "23505": { code: Code.AlreadyExists, message: "already exists" },
  "40001": { code: Code.Aborted, message: "conflicting concurrent change; try again" },
  "40P01": { code: Code.Aborted, message: "conflicting concurrent change; try again" },
  "57014": { code: Code.DeadlineExceeded, message: "the database query took too long" },
};

/**
 * Translates any error into the ConnectError a caller sees. ConnectErrors pass through; known
 * database conditions get their code; everything else becomes "internal error", with the original
 * kept only as `cause` (for the log), never in the message.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const sqlState = (err as { code?: unknown } | null)?.code;
  if (typeof sqlState === "string") {
    const known = postgresCodes[sqlState];
    if (known) return new ConnectError(known.message, known.code, undefined, undefined, err);
  }
  if (err instanceof Error && err.name === "AbortError") {
    return new ConnectError("the server is shutting down; try again", Code.Unavailable, undefined, undefined, err);
  }
  return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}

/** Whether a code means the caller did something wrong (logged as warn) rather than the server. */
export function isCallerError(code: Code): boolean {
  return [
    Code.InvalidArgument,
    Code.NotFound,
    Code.AlreadyExists,
    Code.PermissionDenied,
    Code.Unauthenticated,
    Code.FailedPrecondition,
    Code.OutOfRange,
    Code.Unimplemented,
    Code.ResourceExhausted,
    Code.Canceled,
  ].includes(code);
}
