import { Code, ConnectError } from "@connectrpc/connect";

/** Reads a secret from stdin (all of it, without the trailing newline): never from an argument. */
export async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new ConnectError("pipe the secret on stdin, e.g. `… < password-file`", Code.InvalidArgument);
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}
