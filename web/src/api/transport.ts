import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";

/**
 * Fires "expired" when the panel answers Unauthenticated to a signed-in page (the session ended:
 * idle, lifetime, revoked, or the operator was disabled): the app goes back to sign-in and returns
 * to the page afterwards.
 */
export const sessionEvents = new EventTarget();

const watchSession: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (err) {
    const error = ConnectError.from(err);
    if (error.code === Code.Unauthenticated && req.method.name !== "Login" && req.method.name !== "WhoAmI") {
      sessionEvents.dispatchEvent(new Event("expired"));
    }
    throw err;
  }
};

/**
 * The one transport of the console: the Connect protocol to the panel that served the page (same
 * origin, HTTP/2), binary messages, the session cookie sent with each call.
 */
export const transport = createConnectTransport({
  baseUrl: window.location.origin,
  useBinaryFormat: true,
  fetch: (input, init) => globalThis.fetch(input, { ...init, credentials: "include" }),
  interceptors: [watchSession],
});
