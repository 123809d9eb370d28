/**
 * The console tabs of the WatchEvents benchmark, in a process of their own (so they do not share
 * the panel's event loop): opens WATCHERS streams, each on its own HTTP/2 TLS connection, signed
 * as an API client, Connect protocol with binary messages and no compression (as the console's
 * Connect-Web client asks them). It prints `ready` once every stream has its first message, then
 * prints one JSON line with the latencies' percentiles once EXPECT alert events reached every
 * watcher.
 *
 * 200 tabs are 200 browsers, each decoding only its own stream; here one process reads them all,
 * so it reads them lean: the response envelopes are split and each event's time is read straight
 * from the wire (protobuf's varints, in place), without building message objects or readers.
 * What is measured is then the panel's delivery, not this process's decoding.
 *
 *   BENCH_URL=… BENCH_CA=<pem> BENCH_CLIENT_ID=… BENCH_SECRET=… WATCHERS=200 EXPECT=1000 node --import tsx bench/lib/fleet-watchers.ts
 */
import { connect } from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
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

/**
 * Reads protobuf's wire format in place, without allocating: a varint at `pos`, and where a field
 * of a given number and wire type starts. Enough to read what the latency needs.
 */
function varint(buf: Uint8Array, pos: number): [value: number, next: number] {
  let value = 0;
  let shift = 1;
  for (;;) {
    const byte = buf[pos++]!;
    value += (byte & 0x7f) * shift;
    if (byte < 0x80) return [value, pos];
    shift *= 128;
  }
}

/** Skips a field's value of `wireType` at `pos`; answers where the next field starts. */
function skip(buf: Uint8Array, pos: number, wireType: number): number {
  if (wireType === 0) return varint(buf, pos)[1];
  if (wireType === 1) return pos + 8;
  if (wireType === 5) return pos + 4;
  const [length, start] = varint(buf, pos);
  return start + length;
}

/**
 * Visits each alert event of a WatchEventsResponse in buf[start, end): `events` is field 1; in a
 * FleetEvent, `at` is field 2 (a Timestamp: seconds 1, nanos 2) and an alert is field 7.
 */
function forEachAlert(buf: Uint8Array, start: number, end: number, visit: (atMs: number) => void): void {
  let pos = start;
  while (pos < end) {
    const [tag, afterTag] = varint(buf, pos);
    if (tag !== ((1 << 3) | 2)) {
      pos = skip(buf, afterTag, tag & 7);
      continue;
    }
    const [length, eventStart] = varint(buf, afterTag);
    const eventEnd = eventStart + length;
    let atMs = 0;
    let alert = false;
    for (let p = eventStart; p < eventEnd; ) {
      const [t, q] = varint(buf, p);
      if (t === ((2 << 3) | 2)) {
        const [tsLength, tsStart] = varint(buf, q);
        let seconds = 0;
        let nanos = 0;
        for (let r = tsStart; r < tsStart + tsLength; ) {
          const [tt, rr] = varint(buf, r);
          const [value, next] = varint(buf, rr);
          if (tt >> 3 === 1) seconds = value;
          else if (tt >> 3 === 2) nanos = value;
          r = next;
        }
        atMs = seconds * 1000 + nanos / 1e6;
        p = tsStart + tsLength;
      } else {
        if (t >> 3 === 7) alert = true;
        p = skip(buf, q, t & 7);
      }
    }
    if (alert) visit(atMs);
    pos = eventEnd;
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
      forEachAlert(payload, 0, payload.length, (atMs) => {
        latencies.push(now - atMs);
        if (++received === watchers * expect) finish();
      });
    }
  });
  stream.on("error", (err) => {
    process.stderr.write(`a watcher's stream failed: ${err.message}\n`);
    process.exit(1);
  });
  stream.end(body);
}

for (let i = 0; i < watchers; i++) watch();
