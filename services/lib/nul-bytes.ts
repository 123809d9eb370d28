import { ScalarType } from "@bufbuild/protobuf";
import { type ReflectMessage, reflect } from "@bufbuild/protobuf/reflect";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/**
 * The path of the first string field (or map key) of `message` that holds a NUL byte, protobuf
 * names as protovalidate writes them (`changes[3].user`), or undefined. PostgreSQL text cannot
 * store NUL, and no value of this system means one.
 */
export function nulBytePath(message: ReflectMessage, path = ""): string | undefined {
  const hasNul = (v: unknown) => typeof v === "string" && v.includes("\0");
  for (const field of message.fields) {
    if (!message.isSet(field)) continue;
    const name = path ? `${path}.${field.name}` : field.name;
    switch (field.fieldKind) {
      case "scalar":
        if (field.scalar === ScalarType.STRING && hasNul(message.get(field))) return name;
        break;
      case "message": {
        const found = nulBytePath(message.get(field) as ReflectMessage, name);
        if (found) return found;
        break;
      }
      case "list": {
        let i = 0;
        for (const item of message.get(field) as Iterable<unknown>) {
          if (field.listKind === "scalar" && hasNul(item)) return `${name}[${i}]`;
          if (field.listKind === "message") {
            const found = nulBytePath(item as ReflectMessage, `${name}[${i}]`);
            if (found) return found;
          }
          i++;
        }
        break;
      }
      case "map":
        for (const [key, value] of message.get(field) as Iterable<[unknown, unknown]>) {
          if (hasNul(key)) return `${name}[key]`;
          if (field.mapKind === "scalar" && hasNul(value)) return `${name}[${JSON.stringify(key)}]`;
          if (field.mapKind === "message") {
            const found = nulBytePath(value as ReflectMessage, `${name}[${JSON.stringify(key)}]`);
            if (found) return found;
          }
        }
        break;
    }
  }
  return undefined;
}

const refuse = (path: string) => new ConnectError(`${path}: must not contain a NUL byte`, Code.InvalidArgument);

/**
 * Refuses every request message with a NUL byte in any string, naming the field, before a handler
 * (or a batch it joins) could carry it to PostgreSQL. Streaming requests are checked message by message.
 */
export function createNulByteInterceptor(): Interceptor {
  return (next) => async (req) => {
    if (!req.stream) {
      const path = nulBytePath(reflect(req.method.input, req.message));
      if (path) throw refuse(path);
      return next(req);
    }
    const input = req.message;
    const method = req.method;
    return next({
      ...req,
      message: (async function* () {
        for await (const message of input) {
          const path = nulBytePath(reflect(method.input, message));
          if (path) throw refuse(path);
          yield message;
        }
      })(),
    });
  };
}
