/**
 * The console tabs of the WatchEvents benchmark, in a process of their own (so they do not share
 * the panel's event loop): opens WATCHERS streams, each on its own HTTP/2 TLS connection, signed
 * as an API client, Connect protocol with binary messages and no compression (as the console's
 * Connect-Web client asks them). It prints `ready` once every stream has its first message, then
 * prints one JSON line with the latencies' percentiles once EXPECT alert events reached every
 * watcher.
 *
 * 200 tabs are 200 browsers, each decoding only its own stream; here one process reads them all,
 * so it reads them lean: the response envelopes are split and each event's id and time are read
 * straight from the wire (protobuf field by field), without building message objects. What is
 * measured is then the panel's delivery, not this process's decoding.
 *
 *   BENCH_URL=… BENCH_CA=<pem> BENCH_CLIENT_ID=… BENCH_SECRET=… WATCHERS=200 EXPECT=1000 node --import tsx bench/lib/fleet-watchers.ts
 */
import { connect } from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { WatchEventsRequestSchema } from "../../gen/myosicam/panel/v1/fleet_pb.js";
import { signingHeaders } from "../../services/lib/hmac/canonical.js";

const env = (name: string) => process.env[name] ?? "";
const watchers = Number(env("WATCHERS"));
const expect = Number(env("EXPECT"));
const procedure = "/myosicam.panel.v1.FleetService/WatchEvents";
const latencies: number[] = [];
let ready = 0;
let received = 0;

const finish = () => {
  latencies.sort((a, b) => a - b);
  const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))] ?? Number.NaN;
  process.stdout.write(`${JSON.stringify({ deliveries: latencies.length, p50: at(50), p99: at(99), max: latencies.at(-1) })}\n`);
  process.exit(0);
};
process.on("SIGTERM", finish);

/** The Unix time in ms of a FleetEvent's `at` (field 2, a Timestamp), and whether it is an alert (field 7). */
function readEvent(bytes: Uint8Array): { atMs: number; alert: boolean } {
  const reader = new BinaryReader(bytes);
  let atMs = 0;
  let alert = false;
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    if (no === 2 && wireType === WireType.LengthDelimited) {
      const ts = new BinaryReader(reader.bytes());
      let seconds = 0;
      let nanos = 0;
      while (ts.pos < ts.len) {
        const [f, w] = ts.tag();
        if (f === 1) seconds = Number(ts.int64());
        else if (f === 2) nanos = ts.int32();
        else ts.skip(w);
      }
      atMs = seconds * 1000 + nanos / 1e6;
    } else {
      if (no === 7) alert = true;
      reader.skip(wireType);
    }
  }
  return { atMs, alert };
}

/** Each event (field 1) of a WatchEventsResponse. */
function* eventsOf(message: Uint8Array): Generator<Uint8Array> {
  const reader = new BinaryReader(message);
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    if (no === 1 && wireType === WireType.LengthDelimited) yield reader.bytes();
    else reader.skip(wireType);
  }
}

function watch() {
  const session = connect(env("BENCH_URL"), { ca: env("BENCH_CA") });
  session.on("error", (err) => {
    process.stderr.write(`a watcher's connection failed: ${err.message}\n`);
    process.exit(1);
  });
  const message = toBinary(WatchEventsRequestSchema, create(WatchEventsRequestSchema, {}));
  const body = Buffer.alloc(5 + message.length);
  body.writeUInt32BE(message.length, 1);
  body.set(message, 5);
  const signed = signingHeaders({ callerId: env("BENCH_CLIENT_ID"), secret: env("BENCH_SECRET"), procedure, body, nowSeconds: Date.now() / 1000 });
  const stream = session.request({
    ":method": "POST",
    ":path": procedure,
    "content-type": "application/connect+proto",
    "connect-protocol-version": "1",
    ...signed,
  });
  let pending: Buffer = Buffer.alloc(0);
  let first = true;
  stream.on("data", (chunk: Buffer) => {
    const now = Date.now();
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 5) {
      const length = pending.readUInt32BE(1);
      if (pending.length < 5 + length) break;
      const flags = pending[0]!;
      const payload = pending.subarray(5, 5 + length);
      pending = pending.subarray(5 + length);
      if (flags & 0x02) {
        process.stderr.write(`a watcher's stream ended: ${payload.toString()}\n`);
        process.exit(1);
      }
      if (first) {
        first = false;
        if (++ready === watchers) process.stdout.write("ready\n");
      }
      for (const event of eventsOf(payload)) {
        const { atMs, alert } = readEvent(event);
        if (!alert) continue;
        latencies.push(now - atMs);
        if (++received === watchers * expect) finish();
      }
    }
  });
  stream.on("error", (err) => {
    process.stderr.write(`a watcher's stream failed: ${err.message}\n`);
    process.exit(1);
  });
  stream.end(body);
}

for (let i = 0; i < watchers; i++) watch();
