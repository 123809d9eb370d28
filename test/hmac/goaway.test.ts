import { once } from "node:events";
import { constants, createSecureServer, type ServerHttp2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { GuardedHttp2SessionManager } from "../../services/lib/http2-session-manager.js";
import { loadTlsIdentity } from "../../services/lib/tls.js";
import { makeTempDir } from "../helpers/cli.js";

const test = suite("HTTP/2 connections the server ends with GOAWAY");

test("an idle connection ended by GOAWAY while a new request starts does not crash the process", async () => {
  const dir = await makeTempDir("goaway");
  const tls = await loadTlsIdentity({ dataDir: dir.path });
  const sessions = new Set<ServerHttp2Session>();
  const server = createSecureServer({ cert: tls.cert, key: tls.key }, (_req, res) => res.end("ok"));
  server.on("session", (s) => sessions.add(s));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const uncaught: unknown[] = [];
  let settle = () => {};
  const onUncaught = (err: unknown) => {
    uncaught.push(err);
    settle();
  };
  process.on("uncaughtException", onUncaught);
  const manager = new GuardedHttp2SessionManager(origin, {}, { ca: tls.cert });
  const get = async () => {
    const stream = await manager.request("GET", "/", {}, {});
    const session = stream.session!;
    stream.resume();
    stream.end();
    await once(stream, "close");
    return session;
  };
  try {
    const first = await get();
    // Node raises the destroyed connection's error just before its "close" (which a throw there skips).
    const firstClosed = new Promise<void>((resolve) => {
      settle = resolve;
      first.once("close", resolve);
    });
    // The server ends the idle connection; as the client reads the GOAWAY, a new call starts.
    const again = new Promise<unknown>((resolve) => first.once("goaway", () => resolve(get())));
    for (const s of sessions) s.goaway(constants.NGHTTP2_NO_ERROR);
    await again;
    await firstClosed;
    await get();
    assert.equal(uncaught.map(String), []);
  } finally {
    process.off("uncaughtException", onUncaught);
    manager.abort();
    server.close();
    await dir.remove();
  }
});

test.run();
