import { Code, ConnectError } from "@connectrpc/connect";

/**
 * The words to show for a failed call: the API's own message (it says what to do), or, when the
 * panel could not be reached at all, that.
 */
export function errorText(err: unknown): string {
  if (!err) return "";
  const error = ConnectError.from(err);
  if (error.code === Code.Unavailable && /fetch|network|load failed/i.test(error.rawMessage)) {
    return "The panel could not be reached. Check the connection; what you see may be out of date.";
  }
  if (error.code === Code.Canceled) return "Cancelled.";
  const words = error.rawMessage || "something went wrong; the panel's log has the request id";
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export const isCode = (err: unknown, code: Code) => err instanceof ConnectError && err.code === code;
