import { ScalarType } from "@bufbuild/protobuf";
import { type ReflectMessage, reflect } from "@bufbuild/protobuf/reflect";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/** 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range of google.protobuf.Timestamp. */
const earliestSeconds = -62135596800n;
const latestSeconds = 253402300799n;

/** Why a Timestamp cannot be used, or undefined when it is one. */
function badTimestamp(message: ReflectMessage): string | undefined {
  const seconds = BigInt((message.message as { seconds?: bigint }).seconds ?? 0n);
  const nanos = Number((message.message as { nanos?: number }).nanos ?? 0);
  if (seconds < earliestSeconds || seconds > latestSeconds) return "must be a time between the years 1 and 9999";
  if (!Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) return "must have nanos between 0 and 999999999";
  return undefined;
}

/**
 * The first value of `message` that nothing in this system can hold, with its path as
 * protovalidate writes it (`changes[3].user`): a string (or map key) with a NUL byte (PostgreSQL
 * text cannot store one, and no value here means one), or a Timestamp outside the range protobuf
 * defines (a date that neither JavaScript nor PostgreSQL would read back as the same time).
 */
export function unstorableValue(message: ReflectMessage, path = ""): { path: string; why: string } | undefined {
  if (message.desc.typeName === "google.protobuf.Timestamp") {
    const why = badTimestamp(message);
    return why ? { path, why } : undefined;
  }
  const nul = (v: unknown, at: string) => (typeof v === "string" && v.includes("\0") ? { path: at, why: "must not contain a NUL byte" } : undefined);
  for (const field of message.fields) {
    if (!message.isSet(field)) continue;
    const name = path ? `${path}.${field.name}` : field.name;
    switch (field.fieldKind) {
      case "scalar":
        if (field.scalar === ScalarType.STRING) {
          const found = nul(message.get(field), name);
          if (found) return found;
        }
        break;
      case "message": {
        const found = unstorableValue(message.get(field) as ReflectMessage, name);
        if (found) return found;
        break;
      }
      case "list": {
        let i = 0;
        for (const item of message.get(field) as Iterable<unknown>) {
          const found =
            field.listKind === "scalar"
              ? nul(item, `${name}[${i}]`)
              : field.listKind === "message"
                ? unstorableValue(item as ReflectMessage, `${name}[${i}]`)
                : undefined;
          if (found) return found;
          i++;
        }
        break;
      }
      case "map":
        for (const [key, value] of message.get(field) as Iterable<[unknown, unknown]>) {
          const at = `${name}[${JSON.stringify(key)}]`;
          const found =
            nul(key, `${name}[key]`) ??
            (field.mapKind === "scalar" ? nul(value, at) : field.mapKind === "message" ? unstorableValue(value as ReflectMessage, at) : undefined);
          if (found) return found;
        }
        break;
    }
  }
  return undefined;
}

const refuse = (found: { path: string; why: string }) => new ConnectError(`${found.path}: ${found.why}`, Code.InvalidArgument);

/**
 * Refuses every request message holding a value nothing here can store (see `unstorableValue`),
 * naming the field, before a handler (or a batch it joins) could carry it to PostgreSQL.
 * Streaming requests are checked message by message.
 */
export function createUnstorableValueInterceptor(): Interceptor {
  return (next) => async (req) => {
    if (!req.stream) {
      const found = unstorableValue(reflect(req.method.input, req.message));
      if (found) throw refuse(found);
      return next(req);
    }
    const input = req.message;
    const method = req.method;
    return next({
      ...req,
      message: (async function* () {
        for await (const message of input) {
          const found = unstorableValue(reflect(method.input, message));
          if (found) throw refuse(found);
          yield message;
        }
      })(),
    });
  };
}
