import { once } from "node:events";
import { createServer, type Socket } from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { LicenseService } from "../../gen/myosicam/license/v1/license_pb.js";
import { createSignedTransport } from "../../services/lib/hmac/signing-client.js";

const test = suite("the signing transport gives up a connection that is accepted and never answered");

test("a server that accepts and says nothing fails the call with Unavailable and the reason, instead of holding it for good", async () => {
  const held = new Set<Socket>();
  const silent = createServer((socket) => {
    held.add(socket);
    socket.on("error", () => {});
  });
  silent.listen(0, "127.0.0.1");
  await once(silent, "listening");
  const { port } = silent.address() as { port: number };
  try {
    const client = createClient(
      LicenseService,
      createSignedTransport({ baseUrl: `https://127.0.0.1:${port}`, credentials: { callerId: "panel", secret: "s".repeat(64) }, connectTimeoutMs: 300 }),
    );
    // The call's own deadline is far away: only the connect timeout can end it this soon.
    const outcome = await client.getPlanCatalog({}, { timeoutMs: 120_000 }).then(
      () => "answered",
      (e: unknown) => ConnectError.from(e),
    );
    assert.instance(outcome, ConnectError);
    assert.is((outcome as ConnectError).code, Code.Unavailable, (outcome as ConnectError).message);
    assert.match((outcome as ConnectError).rawMessage, /accepted the connection but did not complete the TLS handshake within 0\.3 s/);
    assert.ok(held.size >= 1, "the connection was accepted");
  } finally {
    for (const s of held) s.destroy();
    silent.close();
  }
});

test.run();
