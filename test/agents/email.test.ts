import { createServer, type Server } from "node:http";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { sendMail } from "../../services/lib/email/send.js";

const test = suite("alert e-mail through the Mailgun HTTP API, and what a failure says");

let server: Server;
let base: string;
const received: Array<{ path: string; authorization: string; body: URLSearchParams }> = [];

test.before(async () => {
  server = createServer((req, res) => {
    let text = "";
    req.on("data", (c: Buffer) => (text += c.toString()));
    req.on("end", () => {
      received.push({ path: req.url ?? "", authorization: String(req.headers.authorization), body: new URLSearchParams(text) });
      const ok = req.headers.authorization === `Basic ${Buffer.from("api:key-good").toString("base64")}`;
      res.writeHead(ok ? 200 : 401, { "content-type": "application/json" });
      res.end(ok ? '{"id":"<1@mg>","message":"Queued. Thank you."}' : '{"message":"Invalid private key"}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
test.after(() => new Promise<void>((resolve) => server.close(() => resolve())));

test("a message goes to /v3/<domain>/messages with basic auth and every recipient", async () => {
  await sendMail(
    { provider: "mailgun", from: "panel@example.com", domain: "mg.example.com", region: "eu", apiKey: "key-good", baseUrl: base },
    { to: ["a@example.com", "b@example.com"], subject: "s", text: "t" },
  );
  const [call] = received;
  assert.is(call!.path, "/v3/mg.example.com/messages");
  assert.equal(call!.body.getAll("to"), ["a@example.com", "b@example.com"]);
  assert.is(call!.body.get("subject"), "s");
});

test("a refusal says what Mailgun answered, never the key", async () => {
  const err = await sendMail(
    { provider: "mailgun", from: "p@example.com", domain: "mg.example.com", region: "us", apiKey: "key-bad", baseUrl: base },
    { to: ["a@example.com"], subject: "s", text: "t" },
  ).catch((e: Error) => e);
  assert.match((err as Error).message, /^Mailgun refused the message: HTTP 401 .*Invalid private key/);
  assert.not.match((err as Error).message, /key-bad/);
});

test("no route or no recipients is an error naming the command to run", async () => {
  const none = await sendMail({ provider: "none" }, { to: ["a@example.com"], subject: "s", text: "t" }).catch((e: Error) => e);
  assert.match((none as Error).message, /npx myosicam email smtp/);
  const nobody = await sendMail(
    { provider: "mailgun", from: "p@example.com", domain: "d", region: "us", apiKey: "k", baseUrl: base },
    { to: [], subject: "s", text: "t" },
  ).catch((e: Error) => e);
  assert.match((nobody as Error).message, /no alert recipients/);
});

test.run();
