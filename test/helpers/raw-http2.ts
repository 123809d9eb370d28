import { connect as tlsConnect, type TLSSocket } from "node:tls";

/**
 * An HTTP/2 client that writes frames by hand, for what a well-behaved client library will not
 * do: more streams than the server allows, open-and-reset, headers never finished, pings never
 * answered. It answers the server's SETTINGS (so it is a valid peer until it misbehaves) and,
 * unless told not to, its PINGs. It records what the server did: streams reset and with what
 * code, GOAWAY, and when the server closed the connection.
 */
export interface RawHttp2 {
  socket: TLSSocket;
  /** HEADERS for `streamId` (odd, increasing), literal fields; END_HEADERS unless `endHeaders` is false. */
  headers(streamId: number, fields: ReadonlyArray<[string, string]>, options?: { endStream?: boolean; endHeaders?: boolean }): void;
  data(streamId: number, bytes: Uint8Array, endStream?: boolean): void;
  reset(streamId: number, code?: number): void;
  /** RST_STREAM codes the server sent, by code. */
  readonly resets: Map<number, number>;
  /** Streams the server ended (END_STREAM on its HEADERS or DATA, or RST_STREAM). */
  readonly ended: Set<number>;
  /** The GOAWAY error code, once the server sent one. */
  readonly goaway: () => number | undefined;
  /** Resolves when the server (or the network) closed the connection, with the ms since `connect`. */
  readonly closed: Promise<number>;
  isClosed(): boolean;
  destroy(): void;
}

export const frameType = { data: 0, headers: 1, rstStream: 3, settings: 4, ping: 6, goaway: 7, continuation: 9 } as const;
export const h2Errors = { noError: 0, cancel: 8, refusedStream: 7, enhanceYourCalm: 11 } as const;

function frame(type: number, flags: number, streamId: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head.writeUInt8(type, 3);
  head.writeUInt8(flags, 4);
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, firstByteFlags = 0): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [firstByteFlags | value];
  const out = [firstByteFlags | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** SETTINGS_HEADER_TABLE_SIZE. */
const settingHeaderTableSize = 0x1;

/** Header fields as "literal without indexing, new name" entries, no Huffman coding. */
export function hpackLiterals(fields: ReadonlyArray<[string, string]>): Buffer {
  const bytes: number[] = [];
  for (const [name, value] of fields) {
    const n = Buffer.from(name, "latin1");
    const v = Buffer.from(value, "latin1");
    bytes.push(0x00, ...hpackInt(n.length, 7), ...n, ...hpackInt(v.length, 7), ...v);
  }
  return Buffer.from(bytes);
}

/** Opens a TLS connection with ALPN h2, sends the preface and empty SETTINGS; resolves once connected. */
export async function rawHttp2(url: string, options: { answerPings?: boolean; preface?: boolean } = {}): Promise<RawHttp2> {
  // With the preface sent, it resolves once the server's SETTINGS are acknowledged: a frame of ours
  // inside a header block would be a protocol error of its own.
  const { hostname, port } = new URL(url);
  const started = performance.now();
  const socket = tlsConnect({ host: hostname, port: Number(port), ALPNProtocols: ["h2"], rejectUnauthorized: false });
  await new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", () => resolve());
    socket.once("error", reject);
  });
  socket.on("error", () => {});
  if (options.preface !== false) socket.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"), frame(frameType.settings, 0, 0)]));
  const resets = new Map<number, number>();
  const ended = new Set<number>();
  let goaway: number | undefined;
  let settled!: () => void;
  const settingsExchanged = new Promise<void>((resolve) => (settled = resolve));
  let closedFlag = false;
  const closed = new Promise<number>((resolve) =>
    socket.once("close", () => {
      closedFlag = true;
      resolve(performance.now() - started);
    }),
  );
  let pending = Buffer.alloc(0);
  // A server that advertises a smaller HPACK table than the default 4,096 bytes is owed a dynamic
  // table size update at the start of the next header block once its SETTINGS are acknowledged
  // (RFC 7541 §4.2): without it, the header block is a compression error.
  let tableSizeUpdate: number[] = [];
  socket.on("data", (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 9) {
      const length = pending.readUIntBE(0, 3);
      if (pending.length < 9 + length) break;
      const type = pending.readUInt8(3);
      const flags = pending.readUInt8(4);
      const payload = pending.subarray(9, 9 + length);
      const streamId = pending.readUInt32BE(5) & 0x7fffffff;
      pending = pending.subarray(9 + length);
      if (type === frameType.settings && !(flags & 1) && !socket.destroyed) {
        for (let at = 0; at + 6 <= payload.length; at += 6) {
          if (payload.readUInt16BE(at) === settingHeaderTableSize) tableSizeUpdate = hpackInt(payload.readUInt32BE(at + 2), 5, 0x20);
        }
        socket.write(frame(frameType.settings, 1, 0));
        settled();
      }
      if (type === frameType.ping && !(flags & 1) && options.answerPings !== false && !socket.destroyed) socket.write(frame(frameType.ping, 1, 0, payload));
      if (type === frameType.rstStream && streamId !== 0) {
        const code = payload.readUInt32BE(0);
        resets.set(code, (resets.get(code) ?? 0) + 1);
        ended.add(streamId);
      }
      if ((type === frameType.headers || type === frameType.data) && flags & 0x1) ended.add(streamId);
      if (type === frameType.goaway) goaway = payload.readUInt32BE(4);
    }
  });
  if (options.preface !== false) await Promise.race([settingsExchanged, closed]);
  const write = (b: Buffer) => {
    if (!socket.destroyed) socket.write(b);
  };
  return {
    socket,
    headers(streamId, fields, o = {}) {
      const flags = (o.endStream ? 0x1 : 0) | (o.endHeaders === false ? 0 : 0x4);
      write(frame(frameType.headers, flags, streamId, Buffer.concat([Buffer.from(tableSizeUpdate), hpackLiterals(fields)])));
      tableSizeUpdate = [];
    },
    data(streamId, bytes, endStream = false) {
      write(frame(frameType.data, endStream ? 1 : 0, streamId, bytes));
    },
    reset(streamId, code = h2Errors.cancel) {
      const payload = Buffer.alloc(4);
      payload.writeUInt32BE(code, 0);
      write(frame(frameType.rstStream, 0, streamId, payload));
    },
    resets,
    ended,
    goaway: () => goaway,
    closed,
    isClosed: () => closedFlag,
    destroy: () => socket.destroy(),
  };
}

/** The request header fields of a POST to `path` on `url`. */
export function postFields(url: string, path: string, contentType = "application/proto"): Array<[string, string]> {
  return [
    [":method", "POST"],
    [":scheme", "https"],
    [":authority", new URL(url).host],
    [":path", path],
    ["content-type", contentType],
  ];
}
