/**
 * The client side of the held-streams benchmark, in a process of its own: opens `count`
 * connections, each holding one binary Connect `Subscribe` call (as the agent does), tells its
 * parent once every stream has its first message, and holds them until it is killed.
 *
 *   held-stream-clients.ts <url> <count> <ca file> [tls|stream] [sync accounts]
 *
 * `tls`: a TLS connection each and nothing more (it counts once the server's first byte arrives).
 * With `sync accounts` above 0, each connection first carries one Sync of an instance with that
 * many accounts (as an agent's first sync), answered before the stream is opened; over `tls`, as
 * many bytes, which the server acknowledges with its first byte.
 */
import { readFileSync } from "node:fs";
import { connect, type ClientHttp2Session } from "node:http2";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { create, toBinary } from "@bufbuild/protobuf";
import { AgentService, SubscribeRequestSchema } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { syncBody } from "./sync-body.js";

const [url, countText, caFile, kind = "stream", syncAccounts = "0"] = process.argv.slice(2);
const count = Number(countText);
const sync = Number(syncAccounts) > 0 ? syncBody(Number(syncAccounts)) : undefined;
const ca = readFileSync(caFile!, "utf8");
const message = toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { agentVersion: "0.1.0" }));
const body = Buffer.alloc(5 + message.length);
body.writeUInt32BE(message.length, 1);
body.set(message, 5);

const held: Array<ClientHttp2Session | TLSSocket> = [];
let open = 0;
const opened = () => {
  if (++open === count) process.send?.("open");
};
for (let i = 0; i < count; i++) {
  // Connections a hundred at a time, as a fleet arrives, not all in one burst.
  if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 50));
  if (kind === "tls") {
    const { hostname, port } = new URL(url!);
    const socket = tlsConnect({ host: hostname, port: Number(port), ca, servername: "localhost" });
    held.push(socket);
    socket.once("data", opened);
    if (sync) socket.write(sync);
    socket.on("error", (err) => {
      console.error(`a TLS client connection failed: ${err.message}`);
      process.exit(1);
    });
    continue;
  }
  const session = connect(url!, { ca });
  held.push(session);
  session.on("error", (err) => {
    console.error(`a held-stream client connection failed: ${err.message}`);
    process.exit(1);
  });
  if (sync) await synced(session, sync);
  const stream = session.request({
    ":method": "POST",
    ":path": `/${AgentService.typeName}/${AgentService.method.subscribe.name}`,
    "content-type": "application/connect+proto",
  });
  stream.once("data", opened);
  stream.on("error", () => undefined);
  stream.end(body);
}

/** One unary Sync on the session, read to its end (its answer is not looked at). */
function synced(session: ClientHttp2Session, request: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const call = session.request({
      ":method": "POST",
      ":path": `/${AgentService.typeName}/${AgentService.method.sync.name}`,
      "content-type": "application/proto",
    });
    call.on("data", () => undefined);
    call.once("end", resolve);
    call.once("error", reject);
    call.end(request);
  });
}
