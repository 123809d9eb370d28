import { createContextKey } from "@connectrpc/connect";
import type { Logger } from "pino";

/** The identity and plumbing a request carries to its handler, in one place. */

/** Correlation id of the request: the caller's `X-Request-Id` when well-formed, else generated. */
export const requestIdKey = createContextKey<string>("", { description: "request id" });

/** The address the request came from, as the server's socket sees it. */
export const peerAddressKey = createContextKey<string>("", { description: "peer address" });

/** A child logger bound to `{svc, rpc, requestId}`; handlers log through it. */
export const requestLoggerKey = createContextKey<Logger | undefined>(undefined, { description: "request logger" });
