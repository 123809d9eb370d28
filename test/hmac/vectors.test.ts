import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { canonicalString, sha256Hex, signatureOf, signingHeaders } from "../../services/lib/hmac/canonical.js";

const repo = resolve(import.meta.dirname, "../..");
const test = suite("HMAC canonical string and the test vectors in docs/hmac.md");

interface Vector {
  callerId: string;
  secret: string;
  timestamp: string;
  nonce: string;
  procedure: string;
  bodyHex: string;
  bodySha256: string;
  signature: string;
}

async function documentedVectors(): Promise<Vector[]> {
  const doc = await readFile(join(repo, "docs/hmac.md"), "utf8");
  const rows = doc.split("\n").filter((l) => /^\| \d+ \|/.test(l));
  return rows.map((row) => {
    const cells = row
      .split("|")
      .slice(2, -1)
      .map((c) => c.trim().replaceAll("`", ""));
    const [callerId, secret, timestamp, nonce, procedure, body, bodySha256, signature] = cells as [string, ...string[]];
    return {
      callerId,
      secret: secret!,
      timestamp: timestamp!,
      nonce: nonce!,
      procedure: procedure!,
      bodyHex: body === "(empty)" ? "" : body!,
      bodySha256: bodySha256!,
      signature: signature!,
    };
  });
}

test("docs/hmac.md has at least three vectors and each one verifies", async () => {
  const vectors = await documentedVectors();
  assert.ok(vectors.length >= 3, `found ${vectors.length}`);
  for (const v of vectors) {
    assert.is(sha256Hex(Buffer.from(v.bodyHex, "hex")), v.bodySha256, `body hash of ${v.callerId}`);
    assert.is(signatureOf(v.secret, { ...v }), v.signature, `signature of ${v.callerId}`);
    const headers = signingHeaders({ ...v, body: Buffer.from(v.bodyHex, "hex"), nowSeconds: Number(v.timestamp) });
    assert.is(headers["x-signature"], v.signature);
  }
});

test("the canonical string is six lines joined by \\n with no trailing newline", () => {
  const text = canonicalString({ callerId: "c", timestamp: "1", nonce: "n", procedure: "/p", bodySha256: "h" });
  assert.is(text, "MYOSICAM-HMAC-SHA256\nc\n1\nn\n/p\nh");
});

test("the shell reference signer produces the documented signature", async () => {
  const [, v] = await documentedVectors();
  const { stdout } = await promisify(execFile)("sh", [join(repo, "docs/examples/sign-request.sh"), v!.procedure, Buffer.from(v!.bodyHex, "hex").toString()], {
    env: {
      PATH: process.env.PATH,
      MYOSICAM_URL: "https://unused",
      MYOSICAM_CALLER_ID: v!.callerId,
      MYOSICAM_SECRET: v!.secret,
      MYOSICAM_TIMESTAMP: v!.timestamp,
      MYOSICAM_NONCE: v!.nonce,
      MYOSICAM_SEND: "0",
    },
  });
  assert.match(stdout, new RegExp(`X-Signature: ${v!.signature}`));
});

test.run();
