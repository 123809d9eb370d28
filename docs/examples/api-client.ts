/**
 * A TypeScript integrator of the operator API: the generated clients of myosicam.panel.v1 over
 * connect-node, and one interceptor that signs every call as docs/hmac.md describes.
 *
 *   MYOSICAM_URL=https://panel.example.com:8443 MYOSICAM_CLIENT_ID=ac_… MYOSICAM_SECRET=… \
 *   MYOSICAM_CA=panel.crt node --import tsx docs/examples/api-client.ts
 *
 * The signature covers the body's bytes as sent. With the Connect protocol, binary encoding and
 * no compression (this transport's settings) a unary body is exactly the serialized message, and
 * a server-streaming request is that message behind a 5-byte envelope; the interceptor builds the
 * same bytes to hash. Change the encoding or turn on compression and it must hash those instead.
 */
import { createHash, createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { toBinary } from "@bufbuild/protobuf";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AuthService } from "../../gen/myosicam/panel/v1/auth_pb.js";
import { FleetService } from "../../gen/myosicam/panel/v1/fleet_pb.js";
import { ServerService, ServerStatus } from "../../gen/myosicam/panel/v1/server_pb.js";

/** A streaming request's body: flags (0), the length as 4 bytes big-endian, the message. */
function envelope(bytes: Uint8Array): Buffer {
  const framed = Buffer.alloc(5 + bytes.length);
  framed.writeUInt32BE(bytes.length, 1);
  framed.set(bytes, 5);
  return framed;
}

function signer(clientId: string, secret: string): Interceptor {
  return (next) => async (req) => {
    if (req.stream && req.method.methodKind !== "server_streaming") throw new Error("client streams are not signed by this example");
    // The one request message: unary, or the single message of a server stream.
    let message = req.message as Parameters<typeof toBinary>[1];
    if (req.stream) for await (const m of req.message) message = m as typeof message;
    const bytes = toBinary(req.method.input, message);
    const body = req.stream ? envelope(bytes) : Buffer.from(bytes);
    const timestamp = String(Math.floor(Date.now() / 1000));
    const nonce = randomBytes(16).toString("hex");
    const path = new URL(req.url).pathname;
    const canonical = ["MYOSICAM-HMAC-SHA256", clientId, timestamp, nonce, path, createHash("sha256").update(body).digest("hex")].join("\n");
    req.header.set("x-caller-id", clientId);
    req.header.set("x-timestamp", timestamp);
    req.header.set("x-nonce", nonce);
    req.header.set("x-signature", createHmac("sha256", secret).update(canonical, "utf8").digest("hex"));
    if (!req.stream) return next(req);
    return next({
      ...req,
      message: (async function* () {
        yield message;
      })(),
    } as typeof req);
  };
}

const env = (name: string) => {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
};

const transport = createConnectTransport({
  baseUrl: env("MYOSICAM_URL"),
  httpVersion: "2",
  useBinaryFormat: true,
  nodeOptions: { ca: readFileSync(env("MYOSICAM_CA"), "utf8") },
  interceptors: [signer(env("MYOSICAM_CLIENT_ID"), env("MYOSICAM_SECRET"))],
});

const me = await createClient(AuthService, transport).whoAmI({});
console.log(JSON.stringify({ whoami: me.name }));
const servers = createClient(ServerService, transport);
const counts = await servers.countServers({});
console.log(JSON.stringify({ total: counts.total, online: counts.online }));
for (const s of (await servers.listServers({ pageSize: 100 })).servers) console.log(JSON.stringify({ name: s.name, status: ServerStatus[s.status] }));
// A server stream, signed the same way: the first message carries the cursor to resume from.
const controller = new AbortController();
try {
  for await (const m of createClient(FleetService, transport).watchEvents({}, { signal: controller.signal, timeoutMs: 0 })) {
    console.log(JSON.stringify({ watching: true, cursor: String(m.cursor) }));
    // A page would keep reading; this example stops after the first message.
    controller.abort();
  }
} catch (err) {
  if (!controller.signal.aborted) throw err;
}
