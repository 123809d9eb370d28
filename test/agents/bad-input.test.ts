import { randomUUID } from "node:crypto";
import { connect } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AgentHealth, CommandOutcome } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { signingHeaders } from "../../services/lib/hmac/canonical.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const test = suite("the panel under bad input: NUL bytes, malformed protobuf, bad readings, a poisoned neighbour");

let panel: PanelHost;
const refusal = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
const heartbeat = { uptimeSeconds: 5n, health: AgentHealth.OK, agentVersion: "0.1.0" };
const resources = { cpuPercent: 1, rssBytes: 1000n, diskBytes: 1000n };

const enroll = (name: string) => panel.enroll(name);

/** A raw HTTP/2 POST, as curl would send it. */
function post(
  path: string,
  contentType: string,
  body: Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; raw: Buffer; trailers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const session = connect(panel.url, { ca: panel.ca });
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": path, "content-type": contentType, ...headers });
    const chunks: Buffer[] = [];
    let status = 0;
    let trailers: Record<string, unknown> = {};
    req.on("response", (h) => (status = Number(h[":status"])));
    req.on("trailers", (t) => (trailers = t));
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      session.close();
      const raw = Buffer.concat(chunks);
      resolve({ status, body: raw.toString(), raw, trailers });
    });
    req.end(body);
  });
}

test.before(async () => {
  panel = await startPanelHost("agents_bad_input", { REGISTRATION_FAILURES_PER_MINUTE: "1000" });
  await panel.setLicense(50, 50);
});
test.after(async () => {
  await panel.stop();
});

test("a NUL byte in a string is InvalidArgument naming the field, on every agent RPC", async () => {
  const agent = await enroll("nul-agent");
  const cases: Array<[string, () => Promise<unknown>, RegExp]> = [
    [
      "Register",
      () =>
        panel.registration().register({
          installToken: "a".repeat(64),
          agentId: randomUUID(),
          hostname: "host\u0000name",
          ip: "192.0.2.1",
          os: "linux",
          osVersion: "x",
          arch: "x64",
          agentVersion: "0.1.0",
        }),
      /hostname/,
    ],
    ["Heartbeat", () => agent.client.heartbeat({ ...heartbeat, instances: [{ name: "ma\u0000in", resources }] }), /instances\[0\]\.name/],
    ["Sync", () => agent.client.sync({ present: [{ name: "x\u0000", contentHash: "0".repeat(64) }] }), /present\[0\]\.name/],
    ["ReportResult", () => agent.client.reportResult({ commandId: randomUUID(), outcome: CommandOutcome.FAILED, detail: "bad\u0000detail" }), /detail/],
  ];
  for (const [rpc, call, field] of cases) {
    const err = await refusal(call());
    assert.ok(err, `${rpc} was refused`);
    assert.is(err!.code, Code.InvalidArgument, `${rpc}: ${err!.message}`);
    assert.match(err!.rawMessage, field, `${rpc}: ${err!.rawMessage}`);
  }
});

test("a truncated binary protobuf body is InvalidArgument 'malformed request body', not internal", async () => {
  const res = await post("/myosicam.agent.v1.RegistrationService/Register", "application/proto", Buffer.from([0x08, 0xff, 0xff]));
  assert.is(res.status, 400, res.body);
  const body = JSON.parse(res.body);
  assert.is(body.code, "invalid_argument");
  assert.match(body.message, /^malformed request body/);
  const grpc = await post("/myosicam.agent.v1.RegistrationService/Register", "application/grpc", Buffer.from([0, 0, 0, 0, 3, 0x08, 0xff, 0xff]));
  assert.is(grpc.status, 200);
  assert.is(grpc.trailers["grpc-status"], String(Code.InvalidArgument));
  assert.match(decodeURIComponent(String(grpc.trailers["grpc-message"])), /^malformed request body/);
});

/** The code and message of a Connect stream's end message (the last envelope, flag 0x02). */
function endOfStream(body: Buffer): { code?: string; message?: string } {
  for (let at = 0; at + 5 <= body.length; at += 5 + body.readUInt32BE(at + 1)) {
    if (body[at]! & 0x02)
      return (
        (JSON.parse(body.subarray(at + 5, at + 5 + body.readUInt32BE(at + 1)).toString("utf8")) as { error?: { code?: string; message?: string } }).error ?? {}
      );
  }
  return {};
}

test("resource readings beyond what the panel can store (1e308 % CPU, 10^13 MB) are InvalidArgument naming the field", async () => {
  const agent = await enroll("huge-readings");
  const err = await refusal(agent.client.sync({ host: { cpuPercent: 1e308 } }));
  assert.is(err?.code, Code.InvalidArgument, err?.message);
  assert.match(err!.rawMessage, /cpu_percent/);
  const disk = await refusal(agent.client.sync({ host: { diskUsedMb: 1e13 } }));
  assert.is(disk?.code, Code.InvalidArgument, disk?.message);
  assert.match(disk!.rawMessage, /disk_used_mb/);
});

test("readings nearer zero than PostgreSQL's real holds (4.3e-78, as the fuzzer sent) are stored as the column holds them, in a sync and a heartbeat, not refused as internal", async () => {
  const agent = await enroll("tiny-readings");
  const host = { cpuPercent: 4.3e-78, memoryUsedMb: 1e-40, memoryTotalMb: 2048, diskUsedMb: 1e-300, load: { one: 1e-50, five: 0.5, fifteen: 4.3e-78 } };
  await agent.client.sync({ host });
  await agent.client.heartbeat({ ...heartbeat, host, load: host.load });
  const samples = await panel
    .db("host_resource_samples")
    .where({ server_id: agent.id })
    .select("cpu_percent", "memory_used_mb", "memory_total_mb", "disk_used_mb", "load_average");
  assert.is(samples.length, 2, "one reading from the sync, one from the heartbeat");
  for (const sample of samples) {
    assert.is(sample.cpu_percent, 0);
    assert.ok(sample.memory_used_mb > 0 && sample.memory_used_mb < 1e-39, `a value real holds stays (${sample.memory_used_mb})`);
    assert.is(sample.memory_total_mb, 2048);
    assert.is(sample.disk_used_mb, 0);
    assert.equal(sample.load_average, [0, 0.5, 0]);
  }
  assert.equal((await panel.db("servers").where({ id: agent.id }).first("load_average")).load_average, [0, 0.5, 0]);
});

test("a stream's request that does not parse, or is marked compressed with no compression named, is InvalidArgument, not internal", async () => {
  const agent = await enroll("stream-garbage");
  const procedure = "/myosicam.agent.v1.AgentService/Subscribe";
  for (const [flags, message, expected] of [
    [0x00, Buffer.from([0x08, 0xff, 0xff]), /^malformed request body: it is not a valid protobuf message/],
    [0x01, Buffer.alloc(0), /^malformed request body: a message is marked compressed/],
  ] as const) {
    const head = Buffer.alloc(5);
    head.writeUInt8(flags, 0);
    head.writeUInt32BE(message.length, 1);
    const body = Buffer.concat([head, message]);
    const res = await post(
      procedure,
      "application/connect+proto",
      body,
      signingHeaders({ callerId: agent.id, secret: agent.token, procedure, body, nowSeconds: Date.now() / 1000 }),
    );
    assert.is(res.status, 200, res.body.toString());
    const end = endOfStream(res.raw);
    assert.is(end.code, "invalid_argument", JSON.stringify(end));
    assert.match(end.message ?? "", expected);
  }
});

test("an agent whose heartbeats are refused never makes another agent's heartbeat fail", async () => {
  const poisoned = await enroll("poisoned");
  const good = await enroll("good");
  for (let round = 0; round < 20; round++) {
    const [bad, fine] = await Promise.all([
      refusal(poisoned.client.heartbeat({ ...heartbeat, uptimeSeconds: 2n ** 64n - 1n, instances: [{ name: "x\u0000", resources }] })),
      refusal(good.client.heartbeat({ ...heartbeat, instances: [{ name: "main", resources }] })),
    ]);
    assert.is(bad?.code, Code.InvalidArgument);
    assert.is(fine, undefined, `round ${round}: ${fine?.message}`);
  }
});

test.run();
