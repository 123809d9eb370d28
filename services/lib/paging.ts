import { Code, ConnectError } from "@connectrpc/connect";

/** The refusal of a page token that is not one this service handed out. */
export const badPageToken = () => new ConnectError("page_token: pass next_page_token of the previous page unchanged", Code.InvalidArgument);

/** A page token that is a row id (the last of the previous page); undefined for the first page. */
export function idCursor(token: string): string | undefined {
  if (token === "") return undefined;
  if (!/^\d{1,19}$/.test(token)) throw badPageToken();
  return token;
}
