import type * as http2 from "node:http2";
import { Http2SessionManager } from "@connectrpc/connect-node";

/** Sessions that already carry the listener below. */
const guarded = new WeakSet<http2.Http2Session>();
const ignore = () => {};

/**
 * connect-node's session manager, with one crash taken out (connectrpc/connect-es#1768, open as
 * of 2.2.0): when a server ends an idle connection with GOAWAY, the manager destroys it with an
 * error that Node raises only once the socket has closed; a call that starts meanwhile makes the
 * manager reconnect and drop its listeners first, and the late error then ends the process. A
 * panel restarting ends every agent's connections so. Each session gets a listener of its own
 * that outlives the manager's; the manager still sees every error while it listens.
 */
export class GuardedHttp2SessionManager extends Http2SessionManager {
  override async request(
    method: string,
    path: string,
    headers: http2.OutgoingHttpHeaders,
    options: Omit<http2.ClientSessionRequestOptions, "signal">,
  ): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(method, path, headers, options);
    const session = stream.session;
    if (session && !guarded.has(session)) {
      guarded.add(session);
      session.on("error", ignore);
    }
    return stream;
  }
}
