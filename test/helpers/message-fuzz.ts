/**
 * Fuzz input for RPCs, from their descriptors: a random message of a method's input type (values
 * that look real often enough to pass validation and reach the handler), then encoded as binary or
 * JSON and mutated the ways a broken or hostile client would: truncation, bit flips, wrong wire
 * types, huge lengths, NUL and invalid UTF-8 in strings, deep nesting, unknown fields. Everything
 * is drawn from a seeded generator, so a failing case is repeated by its seed.
 */
import { create, type DescField, type DescMessage, ScalarType, toBinary, toJsonString } from "@bufbuild/protobuf";

/** A small seeded generator (mulberry32): the same seed gives the same cases. */
export function seededRandom(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (below: number) => Math.floor(next() * below);
  return {
    next,
    int,
    chance: (p: number) => next() < p,
    pick: <T>(items: readonly T[]): T => items[int(items.length)]!,
    bytes: (n: number) => Uint8Array.from({ length: n }, () => int(256)),
  };
}
export type Random = ReturnType<typeof seededRandom>;

/** Strings a handler might accept (ids, names, addresses, dates) and some it must refuse. */
const plausibleStrings = [
  "",
  "main",
  "oscam-01",
  "user1",
  "admin@example.com",
  "127.0.0.1",
  "192.0.2.10:8888",
  "0b7d3c55-8f0e-4d53-9a7e-2f4f7a0c9b11",
  "00000000-0000-0000-0000-000000000000",
  "2026-12-31",
  "0963,098C",
  "/etc/oscam",
  "a".repeat(64),
  "owner",
  "operator",
  "viewer",
  "restart",
  "https://127.0.0.1:1/x",
];

function randomString(r: Random): string {
  switch (r.int(6)) {
    case 0:
    case 1:
      return r.pick(plausibleStrings);
    case 2:
      return Array.from({ length: r.int(40) }, () => String.fromCharCode(32 + r.int(95))).join("");
    case 3:
      return Array.from({ length: r.int(20) }, () => r.pick(["\u0000", "é", "東", "\u202e", "\ud83d\ude00", "'", '"', "\\", "%", "\n", ";", "--"])).join("");
    case 4:
      return "x".repeat(r.pick([255, 256, 1025, 5000]));
    default:
      return `${r.pick(plausibleStrings)}${r.pick(["\u0000", " ", "\t", "../", "*"])}`;
  }
}

function randomScalar(r: Random, type: ScalarType): unknown {
  const edgeInts = [0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 60, 3600];
  switch (type) {
    case ScalarType.STRING:
      return randomString(r);
    case ScalarType.BYTES:
      return r.bytes(r.pick([0, 1, 16, 32, 300]));
    case ScalarType.BOOL:
      return r.chance(0.5);
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return r.pick([0, 1.5, -1, Number.NaN, Number.POSITIVE_INFINITY, 1e308]);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return r.pick([0n, 1n, -1n, 9223372036854775807n, -9223372036854775808n, 1700000000n]);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return r.pick([0n, 1n, 18446744073709551615n, 1700000000n]);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return r.pick([0, 1, 4294967295, 60, 100]);
    default:
      return r.pick(edgeInts);
  }
}

function randomEnum(r: Random, values: readonly { number: number }[]): number {
  return r.chance(0.9) && values.length > 0 ? r.pick(values).number : r.pick([-1, 999, 2 ** 31 - 1]);
}

function randomValue(r: Random, field: DescField, depth: number): unknown {
  switch (field.fieldKind) {
    case "scalar":
      return randomScalar(r, field.scalar);
    case "enum":
      return randomEnum(r, field.enum.values);
    case "message":
      return randomInit(r, field.message, depth + 1);
    case "list": {
      const n = r.pick([0, 1, 2, 3, 40]);
      return Array.from({ length: n }, () =>
        field.listKind === "scalar"
          ? randomScalar(r, field.scalar)
          : field.listKind === "enum"
            ? randomEnum(r, field.enum.values)
            : randomInit(r, field.message, depth + 1),
      );
    }
    case "map": {
      const entries: Record<string, unknown> = {};
      for (let i = r.int(3); i > 0; i--) {
        const key = field.mapKey === ScalarType.STRING ? randomString(r) : String(r.int(100));
        entries[key] =
          field.mapKind === "scalar"
            ? randomScalar(r, field.scalar)
            : field.mapKind === "enum"
              ? randomEnum(r, field.enum.values)
              : randomInit(r, field.message, depth + 1);
      }
      return entries;
    }
  }
}

/** An init object for `create(schema, …)`: each field set or not, one member of each oneof at most. */
function randomInit(r: Random, schema: DescMessage, depth: number): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  if (depth > 4) return init;
  for (const field of schema.fields) {
    if (field.oneof || !r.chance(0.6)) continue;
    init[field.localName] = randomValue(r, field, depth);
  }
  for (const oneof of schema.oneofs) {
    if (!r.chance(0.8) || oneof.fields.length === 0) continue;
    const field = r.pick(oneof.fields);
    init[oneof.localName] = { case: field.localName, value: randomValue(r, field, depth) };
  }
  return init;
}

/** A random message of `schema`, encoded; JSON is undefined when the message has no JSON form (e.g. a timestamp out of range). */
export function randomEncodedMessage(r: Random, schema: DescMessage): { binary: Uint8Array; json?: string } {
  const message = create(schema, randomInit(r, schema, 0) as never);
  const binary = toBinary(schema, message);
  let json: string | undefined;
  try {
    json = toJsonString(schema, message);
  } catch {
    json = undefined;
  }
  return { binary, json };
}

const varint = (n: bigint): number[] => {
  const out: number[] = [];
  let v = n;
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
};
const tag = (field: number, wireType: number) => varint(BigInt((field << 3) | wireType));

/** Binary mutations; each answers the mutated bytes and its name (for the figure and a failure). */
export function mutateBinary(r: Random, bytes: Uint8Array): { bytes: Uint8Array; how: string } {
  const b = Array.from(bytes);
  const at = () => r.int(b.length + 1);
  switch (r.int(10)) {
    case 0:
      return { bytes: Uint8Array.from(b.slice(0, Math.max(0, at() - 1))), how: "truncated" };
    case 1: {
      for (let i = 1 + r.int(4); i > 0 && b.length > 0; i--) {
        const p = r.int(b.length);
        b[p] = b[p]! ^ (1 << r.int(8));
      }
      return { bytes: Uint8Array.from(b), how: "bit flips" };
    }
    case 2: {
      // A known field number with every other wire type.
      const field = 1 + r.int(12);
      const wire = r.pick([0, 1, 2, 5, 3, 4, 6, 7]);
      const body = wire === 0 ? varint(BigInt(r.int(1000))) : wire === 1 ? [...r.bytes(8)] : wire === 5 ? [...r.bytes(4)] : wire === 2 ? [3, 1, 2, 3] : [];
      return { bytes: Uint8Array.from([...tag(field, wire), ...body, ...b]), how: "wrong wire type" };
    }
    case 3: {
      // A length far beyond the body (and beyond 2 GiB).
      const field = 1 + r.int(12);
      const length = r.pick([0xffffffffn, 0x7fffffffn, 2n ** 63n - 1n, 1000n]);
      return { bytes: Uint8Array.from([...b, ...tag(field, 2), ...varint(length), 1, 2, 3]), how: "huge length" };
    }
    case 4: {
      // A string field carrying NUL and invalid UTF-8.
      const field = 1 + r.int(12);
      const payload = r.pick([[0x00], [0xc3, 0x28], [0xff, 0xfe], [0xed, 0xa0, 0x80], [0x61, 0x00, 0x62]]);
      return { bytes: Uint8Array.from([...b, ...tag(field, 2), ...varint(BigInt(payload.length)), ...payload]), how: "NUL / invalid UTF-8" };
    }
    case 5: {
      // Deep nesting: a message field inside itself a few thousand times.
      const field = 1 + r.int(12);
      let inner: number[] = [];
      for (let depth = r.pick([64, 200, 2000]); depth > 0; depth--) inner = [...tag(field, 2), ...varint(BigInt(inner.length)), ...inner];
      return { bytes: Uint8Array.from([...b, ...inner]), how: "deep nesting" };
    }
    case 6: {
      const field = r.pick([1000, 536870911, 19000, 99]);
      return { bytes: Uint8Array.from([...b, ...tag(field, 0), 1, ...tag(field + 1, 2), 2, 0x41, 0x42]), how: "unknown fields" };
    }
    case 7:
      // Now and then a body past the servers' read limit (1 MiB).
      return r.chance(0.05)
        ? { bytes: new Uint8Array(2 * 1024 * 1024).fill(0x0a), how: "2 MiB body" }
        : { bytes: r.bytes(r.pick([1, 7, 100, 5000])), how: "random bytes" };
    case 8: {
      const p = at();
      return { bytes: Uint8Array.from([...b.slice(0, p), ...r.bytes(1 + r.int(8)), ...b.slice(p)]), how: "inserted bytes" };
    }
    default:
      return {
        bytes: Uint8Array.from([...b, ...tag(1 + r.int(12), 0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        how: "overlong varint",
      };
  }
}

/** JSON mutations on the text of a valid message. */
export function mutateJson(r: Random, json: string): { bytes: Uint8Array; how: string } {
  const text = (s: string, how: string) => ({ bytes: Buffer.from(s, "utf8"), how });
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    value = {};
  }
  const object = (value && typeof value === "object" && !Array.isArray(value) ? value : {}) as Record<string, unknown>;
  const keys = Object.keys(object);
  const someKey = () => (keys.length > 0 ? r.pick(keys) : "name");
  switch (r.int(10)) {
    case 0:
      return text(json.slice(0, r.int(json.length)), "truncated");
    case 1:
      return text(
        JSON.stringify({ ...object, [someKey()]: r.pick<unknown>([1, "1", true, null, [], {}, [[1]], { a: 1 }, -1.5e300, 1e21, "NaN"]) }),
        "wrong type",
      );
    case 2:
      return text(JSON.stringify({ ...object, [someKey()]: `a\u0000b${"\u0000".repeat(r.int(3))}` }), "NUL in a string");
    case 3: {
      const good = Buffer.from(JSON.stringify({ ...object, [someKey()]: "XX" }), "utf8");
      const at = good.indexOf("XX");
      good[at] = 0xc3;
      good[at + 1] = 0x28;
      return { bytes: good, how: "invalid UTF-8" };
    }
    case 4: {
      const depth = r.pick([100, 1000, 20_000]);
      return text(`{"${someKey()}":${"[".repeat(depth)}${"]".repeat(depth)}}`, "deep nesting");
    }
    case 5:
      return text(JSON.stringify({ ...object, unknownField: 1, "x\u0000": {}, __proto__: { polluted: true } }), "unknown fields");
    case 6:
      return text(`{"${someKey()}": 1, "${someKey()}": "two"}`, "duplicate keys");
    case 7:
      return text(r.pick(["", "null", "[]", "1", '"x"', "{", "}", "{}}", "\ufeff{}", "{'a':1}"]), "not an object");
    case 8:
      return text(JSON.stringify({ ...object, [someKey()]: "9".repeat(r.pick([20, 400, 5000])) }), "huge number");
    default:
      return { bytes: Buffer.concat([Buffer.from(json, "utf8"), Buffer.from(r.bytes(1 + r.int(16)))]), how: "trailing garbage" };
  }
}

/** A Connect streaming envelope around `body` (flags 0); sometimes with a wrong length, as a broken client would send. */
export function envelope(r: Random, body: Uint8Array, mutate: boolean): { bytes: Uint8Array; how?: string } {
  const head = Buffer.alloc(5);
  let length = body.length;
  let how: string | undefined;
  if (mutate && r.chance(0.2)) {
    length = r.pick([0xffffffff, body.length + 1, Math.max(0, body.length - 1), 0]);
    how = "envelope length wrong";
  }
  head.writeUInt8(mutate && r.chance(0.05) ? 0x01 : 0, 0);
  head.writeUInt32BE(length >>> 0, 1);
  return { bytes: Buffer.concat([head, body]), how };
}
