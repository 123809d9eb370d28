import { suite } from "uvu";
import * as assert from "uvu/assert";
import { EnvelopeError, parseEnvelope } from "../../services/lib/secrets/envelope.js";
import { createKeyring, deriveKey } from "../../services/lib/secrets/keyring.js";
import { newKey, oldKey } from "../helpers/keys.js";

const ctx = { table: "saved_servers", column: "ssh_credential_encrypted", rowId: "7d0c1b0e-4a4e-4c4f-9f7c-1a2b3c4d5e6f" };

const test = suite("AES-256-GCM envelopes and the keyring");

function refusedKind(fn: () => unknown): { kind: string; message: string } {
  try {
    fn();
  } catch (err) {
    assert.instance(err, EnvelopeError);
    return err as EnvelopeError;
  }
  throw new Error("expected the envelope to be refused");
}

test("a sealed value opens to the same bytes, and the envelope has the fixed format", () => {
  const keyring = createKeyring(newKey);
  const envelope = keyring.seal(Buffer.from("hunter2 ünïcode"), ctx);
  assert.match(envelope, /^enc:v1:[0-9a-f]{16}:[A-Za-z0-9_-]+$/);
  assert.is(parseEnvelope(envelope).nonce.length, 12);
  assert.is(keyring.open(envelope, ctx).plaintext.toString(), "hunter2 ünïcode");
  assert.is(keyring.seal(new Uint8Array(), ctx).length > 0, true, "empty values seal too");
});

test("every seal uses a fresh nonce", () => {
  const keyring = createKeyring(newKey);
  const nonces = new Set(Array.from({ length: 1000 }, () => parseEnvelope(keyring.seal(Buffer.from("x"), ctx)).nonce.toString("hex")));
  assert.is(nonces.size, 1000);
});

test("changing any one byte of nonce, ciphertext or tag is refused as tampered", () => {
  const keyring = createKeyring(newKey);
  const envelope = keyring.seal(Buffer.from("a secret of some length"), ctx);
  const prefix = envelope.slice(0, envelope.lastIndexOf(":") + 1);
  const raw = Buffer.from(envelope.slice(prefix.length), "base64url");
  for (let i = 0; i < raw.length; i++) {
    const altered = Buffer.from(raw);
    altered[i] = altered[i]! ^ 0x01;
    const refused = refusedKind(() => keyring.open(prefix + altered.toString("base64url"), ctx));
    assert.is(refused.kind, "tampered", `byte ${i}`);
  }
});

test("an envelope moved to another row, column or table is refused", () => {
  const keyring = createKeyring(newKey);
  const envelope = keyring.seal(Buffer.from("pw"), ctx);
  for (const moved of [
    { ...ctx, rowId: "00000000-0000-4000-8000-000000000000" },
    { ...ctx, column: "smtp_password" },
    { ...ctx, table: "email_settings" },
  ]) {
    const refused = refusedKind(() => keyring.open(envelope, moved));
    assert.is(refused.kind, "tampered");
    assert.match(refused.message, /belongs to another row/);
  }
});

test("an envelope of a key this panel does not hold is refused naming that key id", () => {
  const sealed = createKeyring(oldKey).seal(Buffer.from("pw"), ctx);
  const refused = refusedKind(() => createKeyring(newKey).open(sealed, ctx));
  assert.is(refused.kind, "unknown_key");
  assert.ok(refused.message.includes(deriveKey(oldKey).id), refused.message);
  assert.not.ok(refused.message.includes("pw"));
});

test("with the old key as previous, old envelopes open and say so; new ones seal with the new key", () => {
  const sealedOld = createKeyring(oldKey).seal(Buffer.from("old secret"), ctx);
  const keyring = createKeyring(newKey, oldKey);
  const opened = keyring.open(sealedOld, ctx);
  assert.is(opened.plaintext.toString(), "old secret");
  assert.is(opened.sealedWithPrevious, true);
  assert.is(parseEnvelope(keyring.seal(Buffer.from("x"), ctx)).keyId, deriveKey(newKey).id);
});

test("anything that is not an envelope is refused as malformed", () => {
  const keyring = createKeyring(newKey);
  for (const text of [
    "",
    "hunter2",
    "enc:v1:",
    "enc:v2:0123456789abcdef:AAAA",
    "enc:v1:0123456789abcdef:",
    "enc:v1:0123456789abcdef:AAAA",
    "enc:v1:XYZ:AAAA",
  ]) {
    assert.is(refusedKind(() => keyring.open(text, ctx)).kind, "malformed", JSON.stringify(text));
  }
});

test("the key id is derived from the key and reveals none of it", () => {
  const { id, key } = deriveKey(newKey);
  assert.match(id, /^[0-9a-f]{16}$/);
  assert.is(deriveKey(newKey).id, id, "stable");
  assert.not.ok(newKey.includes(id));
  assert.not.ok(key.export().toString("hex").includes(id));
  assert.is.not(deriveKey(oldKey).id, id);
});

test.run();
