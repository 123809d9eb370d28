import {
  create,
  fromBinary,
  isMessage,
  toBinary,
  type DescMessage,
  type DescMethodServerStreaming,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import type { Http2ServerResponse } from "node:http2";
import { Code, ConnectError, createHandlerContext, type HandlerContext, type Interceptor, type StreamRequest, type StreamResponse } from "@connectrpc/connect";
import { encodeEnvelope, type UniversalServerRequest } from "@connectrpc/connect/protocol";
import {
  contentTypeStreamProto,
  createEndStreamSerialization,
  endStreamFlag,
  headerContentType,
  headerStreamEncoding,
  headerTimeout,
  parseContentType,
  parseTimeout,
} from "@connectrpc/connect/protocol-connect";
import { compressedWithoutEncodingMessage, malformedBodyMessage } from "./errors.js";

/**
 * A server-streaming method that every agent holds open for as long as it runs (the command
 * stream), and its implementation.
 *
 * connect-es serves a held stream through a chain of async generators that its build compiles
 * into helper closures: ≈130 closures and contexts stay alive per open stream (JS heap per held
 * stream 45 KiB through connect's handler, 26 KiB here; `npm run bench -- held-streams`, and
 * docs/sizing.md "What a held agent costs the panel"). This path serves the calls
 * the agent makes — the Connect protocol with binary messages, uncompressed requests — with one
 * loop per stream, and runs the same request gate and interceptors as connect does; any other
 * request for the method (gRPC, gRPC-Web, JSON, compressed) goes to connect's handler as before.
 */
export interface HeldStream<I extends DescMessage = DescMessage, O extends DescMessage = DescMessage> {
  method: DescMethodServerStreaming<I, O>;
  impl: (request: MessageShape<I>, context: HandlerContext) => AsyncIterable<MessageInitShape<O>>;
}

export interface HeldStreamOptions {
  /** Server interceptors, outermost first (as connect applies them). */
  interceptors: readonly Interceptor[];
  /** Runs after headers arrive, before the body is read (as connect's `requestGate`). */
  requestGate?: (ctx: HandlerContext) => void | Promise<void>;
  /** Largest deadline a caller may ask for (0: any). */
  maxTimeoutMs: number;
}

/** Whether this path serves the request: a POST in the Connect protocol, binary, its messages not compressed. */
export function servesHeldStream(req: Pick<UniversalServerRequest, "method" | "header">): boolean {
  if (req.method !== "POST") return false;
  const type = parseContentType(req.header.get(headerContentType));
  if (type === undefined || !type.stream || !type.binary) return false;
  const encoding = req.header.get(headerStreamEncoding);
  return encoding === null || encoding === "identity";
}

const endStream = createEndStreamSerialization(undefined);

/**
 * Serves one call to its end: the gate, the interceptors and the implementation, then every
 * message it yields as an envelope, then the end-of-stream message (with the error, if any, and
 * the trailers as metadata). `answering` is told once, when the call has its first answer (a
 * message or its end). Never rejects.
 */
export async function serveHeldStream<I extends DescMessage, O extends DescMessage>(
  held: HeldStream<I, O>,
  req: UniversalServerRequest,
  res: Http2ServerResponse,
  options: HeldStreamOptions,
  answering: () => void,
): Promise<void> {
  const { method, impl } = held;
  const timeout = parseTimeout(req.header.get(headerTimeout), options.maxTimeoutMs);
  const context = createHandlerContext({
    service: method.parent,
    method,
    protocolName: "connect",
    requestMethod: req.method,
    url: req.url,
    timeoutMs: timeout.timeoutMs,
    requestSignal: req.signal,
    requestHeader: req.header,
    responseHeader: { [headerContentType]: contentTypeStreamProto },
    contextValues: req.contextValues,
  });
  const writer = envelopeWriter(res, context.responseHeader);
  let failure: unknown;
  try {
    await options.requestGate?.(context);
    const invoke = applyInterceptors<I, O>(async (request) => {
      const input = await onlyMessage(request.message);
      const output = impl(input, { ...context, requestHeader: request.header, values: request.contextValues, signal: request.signal });
      return {
        stream: true,
        service: method.parent,
        method,
        header: context.responseHeader,
        trailer: context.responseTrailer,
        contextValues: request.contextValues,
        message: asMessages(method.output, output),
      };
    }, options.interceptors);
    const response = await invoke({
      stream: true,
      service: method.parent,
      method,
      requestMethod: req.method,
      url: req.url,
      signal: context.signal,
      header: context.requestHeader,
      contextValues: context.values,
      // A deadline that does not parse is refused when the request is read, inside the
      // interceptors (as connect does): it is logged and answered with the request id.
      message: requestMessages(req.body as AsyncIterable<Uint8Array>, method.input, timeout.error),
    });
    copyHeaders(response.header, context.responseHeader);
    for await (const message of response.message) {
      await writer.message(toBinary(method.output, message));
      answering();
    }
    copyHeaders(response.trailer, context.responseTrailer);
  } catch (err) {
    failure = err;
  }
  // Ends the deadline timer and the signal linked to the request's (connect does the same).
  context.abort(failure);
  answering();
  writer.end(failure, context.responseTrailer);
}

function applyInterceptors<I extends DescMessage, O extends DescMessage>(
  next: (req: StreamRequest<I, O>) => Promise<StreamResponse<I, O>>,
  interceptors: readonly Interceptor[],
): (req: StreamRequest<I, O>) => Promise<StreamResponse<I, O>> {
  // The first interceptor is the outermost: wrap from the last one inwards.
  let call = next as (req: StreamRequest<I, O>) => Promise<StreamResponse<I, O>>;
  for (let i = interceptors.length - 1; i >= 0; i--) call = interceptors[i]!(call as never) as unknown as typeof call;
  return call;
}

/** The request body's enveloped messages, parsed (the body is one small message; it is read whole). */
async function* requestMessages<I extends DescMessage>(
  body: AsyncIterable<Uint8Array>,
  schema: I,
  refusal: ConnectError | undefined,
): AsyncGenerator<MessageShape<I>> {
  if (refusal) throw refusal;
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  const bytes = Buffer.concat(chunks);
  let offset = 0;
  while (offset < bytes.byteLength) {
    if (bytes.byteLength - offset < 5) throw protocolError(`an enveloped message is cut short: ${bytes.byteLength - offset} bytes of its 5-byte prefix`);
    const flags = bytes[offset]!;
    const length = bytes.readUInt32BE(offset + 1);
    offset += 5;
    if (flags !== 0) {
      throw new ConnectError(
        flags & 1 ? compressedWithoutEncodingMessage : `malformed request body: an enveloped message has flags ${flags}, which a request may not carry`,
        Code.InvalidArgument,
      );
    }
    if (bytes.byteLength - offset < length) throw protocolError(`an enveloped message promises ${length} bytes, ${bytes.byteLength - offset} arrived`);
    const data = bytes.subarray(offset, offset + length);
    offset += length;
    let message: MessageShape<I>;
    try {
      message = fromBinary(schema, data);
    } catch (err) {
      throw new ConnectError(malformedBodyMessage(err instanceof Error ? err.message : String(err)), Code.InvalidArgument);
    }
    yield message;
  }
}

function protocolError(detail: string) {
  return new ConnectError(`malformed request body: ${detail}`, Code.InvalidArgument);
}

/** The one request message of a server-streaming call (connect's words when there is none, or more). */
async function onlyMessage<T>(messages: AsyncIterable<T>): Promise<T> {
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) throw new ConnectError("protocol error: missing input message for server-streaming method", Code.Unimplemented);
  const second = await it.next();
  if (second.done !== true) throw new ConnectError("protocol error: received extra input message for server-streaming method", Code.Unimplemented);
  return first.value;
}

/** What an implementation yields (messages or their init shapes), as messages of the output type. */
async function* asMessages<O extends DescMessage>(schema: O, output: AsyncIterable<unknown>): AsyncGenerator<MessageShape<O>> {
  for await (const value of output) {
    yield isMessage(value, schema) ? value : create(schema, value as never);
  }
}

function copyHeaders(from: Headers, to: Headers) {
  if (from === to) return;
  for (const [key, value] of from) to.set(key, value);
}

/**
 * Writes envelopes to the response: the status and headers with the first one (so that an
 * implementation can still add headers until then), waiting for the response to drain when the
 * client reads slowly. Once the response has closed (the client went away), a message is refused
 * with `Canceled` rather than written into nothing; the compatibility response of HTTP/2 has no
 * `destroyed` to ask, so its close is tracked here.
 */
function envelopeWriter(res: Http2ServerResponse, header: Headers) {
  let closed = false;
  let drained: (() => void) | undefined;
  res.once("close", () => {
    closed = true;
    drained?.();
  });
  const writeHead = () => {
    if (!res.headersSent) res.writeHead(200, Object.fromEntries(header));
  };
  return {
    async message(bytes: Uint8Array) {
      if (closed || res.writableEnded) throw new ConnectError("the client closed the stream", Code.Canceled);
      writeHead();
      if (res.write(encodeEnvelope(0, bytes)) || closed) return;
      await new Promise<void>((resolve) => {
        drained = () => {
          drained = undefined;
          res.off("drain", onDrain);
          resolve();
        };
        const onDrain = () => drained?.();
        res.once("drain", onDrain);
      });
    },
    end(failure: unknown, trailer: Headers) {
      if (closed || res.writableEnded) return;
      const error =
        failure === undefined
          ? undefined
          : failure instanceof ConnectError
            ? failure
            : new ConnectError("internal error", Code.Internal, undefined, undefined, failure);
      writeHead();
      res.end(encodeEnvelope(endStreamFlag, endStream.serialize({ metadata: trailer, error })));
    },
  };
}
