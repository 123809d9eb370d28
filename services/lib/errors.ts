import { Code, ConnectError } from "@connectrpc/connect";

/** PostgreSQL SQLSTATE codes that map to a code a caller can act on. */
const postgresCodes: Readonly<Record<string, { code: Code; message: string }>> = {
  "23505": { code: Code.AlreadyExists, message: "already exists" },
  "40001": { code: Code.Aborted, message: "conflicting concurrent change; try again" },
  "40P01": { code: Code.Aborted, message: "conflicting concurrent change; try again" },
  "57014": { code: Code.DeadlineExceeded, message: "the database query took too long" },
};

/** connect-es reports a request body that is not valid protobuf as `internal: parse binary: …`. */
export const parseBinaryPrefix = "parse binary: ";

/** What a caller is told instead: the fault is in what it sent. */
export const malformedBodyMessage = (detail: string) => `malformed request body: it is not a valid protobuf message (${detail})`;

/** What a caller is told of a message flagged compressed in a request that names no compression. */
export const compressedWithoutEncodingMessage =
  "malformed request body: a message is marked compressed, but the request names no compression (Connect-Content-Encoding)";

/**
 * connect-es answers some faults of what a caller sent as `internal`; the caller is told what it
 * got wrong instead, as `invalid_argument`. A stream's request reaches the interceptors with them
 * (a unary one is answered before: connect-adapter.ts rewrites that answer).
 */
function callerFault(message: string): ConnectError | undefined {
  if (message.startsWith(parseBinaryPrefix)) return new ConnectError(malformedBodyMessage(message.slice(parseBinaryPrefix.length)), Code.InvalidArgument);
  if (message === "received compressed envelope, but do not know how to decompress") {
    return new ConnectError(compressedWithoutEncodingMessage, Code.InvalidArgument);
  }
  if (message === "received parsed JSON request body, but content-type indicates binary format") {
    return new ConnectError("malformed request: the message was sent as JSON, but the content type says binary protobuf", Code.InvalidArgument);
  }
  return undefined;
}

/** How a call ends (`canceled`) whose caller went away (closed it, or its connection). */
export const callerGoneMessage = "the caller went away";

/** What a call whose request body is too slow to arrive is answered (with `deadline_exceeded`). */
export const bodyTimeoutMessage = "the request body did not arrive in time";

/** What a call still under way when its server stops is answered (with `unavailable`: try again). */
export const shuttingDownMessage = "the server is shutting down; try again";

/**
 * Translates any error into the ConnectError a caller sees. ConnectErrors pass through; known
 * database conditions get their code; everything else becomes "internal error", with the original
 * kept only as `cause` (for the log), never in the message.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err.code === Code.Internal ? (callerFault(err.rawMessage) ?? err) : err;
  const sqlState = (err as { code?: unknown } | null)?.code;
  if (typeof sqlState === "string") {
    const known = postgresCodes[sqlState];
    if (known) return new ConnectError(known.message, known.code, undefined, undefined, err);
  }
  if (isDatabaseUnavailable(err)) {
    return new ConnectError("the database is unavailable right now; try again shortly", Code.Unavailable, undefined, undefined, err);
  }
  // The call's signal was aborted without a reason of ours (a stop aborts with a ConnectError
  // saying so), or its request ended before all of its body arrived: its caller went away.
  if ((err instanceof Error && err.name === "AbortError") || (err as { code?: unknown } | null)?.code === "ERR_STREAM_PREMATURE_CLOSE") {
    return new ConnectError(callerGoneMessage, Code.Canceled, undefined, undefined, err);
  }
  return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}

/** Socket errors of a connection to the database server that cannot be made or was lost. */
const connectionErrnos = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);

/**
 * Whether an error says the database cannot be reached (rather than that a query was wrong):
 * no connection, a lost one, the server shutting down or starting (SQLSTATE 08xxx but 08P01, 57P01–57P03),
 * or the pool timing out waiting for a connection. Callers see Unavailable and retry.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (
    let e = err as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown } | undefined, depth = 0;
    e && depth < 5;
    e = e.cause as typeof e, depth++
  ) {
    const code = typeof e.code === "string" ? e.code : "";
    // 08P01 (protocol violation) is a statement the server could not take, not a lost connection.
    if (connectionErrnos.has(code) || (code.startsWith("08") && code !== "08P01") || code === "57P01" || code === "57P02" || code === "57P03") return true;
    const message = typeof e.message === "string" ? e.message : "";
    if (/^Knex: Timeout acquiring a connection|Connection terminated|connection terminated|Client has encountered a connection error/.test(message))
      return true;
    // AggregateError of a connect attempt to several addresses (localhost → ::1 and 127.0.0.1).
    if (Array.isArray(e.errors) && e.errors.some((inner) => isDatabaseUnavailable(inner))) return true;
  }
  return false;
}

/** SQLSTATEs of a statement that failed for no fault of its data: deadlock, serialization, timeout, lock not available. */
const batchWideStates = new Set(["40P01", "40001", "57014", "55P03"]);

/**
 * Whether a failed statement failed for reasons no single item of its batch caused: the database
 * unreachable or its pool taken, a deadlock, a timeout. Splitting the batch would not find an
 * offender, only repeat the failure once per item.
 */
export function isBatchWideFailure(err: unknown): boolean {
  const sqlState = (err as { code?: unknown } | null)?.code;
  return (typeof sqlState === "string" && batchWideStates.has(sqlState)) || isDatabaseUnavailable(err);
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
