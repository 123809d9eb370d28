/**
 * Saved servers: where the installer connects (host, port, user) and with what (a password or a
 * private key, sealed through CryptoService in `ssh_credential_encrypted`). The credential is
 * opened only inside an install job and never leaves this module other than to ssh2.
 */
import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import ssh2 from "ssh2";
import type { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import type { Knex } from "../lib/db.js";

export type AuthKind = "password" | "private_key";

export interface SavedServer {
  id: string;
  name: string;
  host: string;
  port: number;
  username: string;
  authKind: AuthKind;
  /** `SHA256:<base64>` of the host key pinned on first use; null until the first connection. */
  hostKeyFingerprint: string | null;
  createdBy: string;
  createdAt: Date;
}

export interface SavedServerInput {
  name: string;
  host: string;
  port?: number;
  username: string;
  authKind: AuthKind;
  /** The password, or the private key in OpenSSH or PEM form (unencrypted). */
  credential: string;
  createdBy: string;
}

const namePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
// A host name or an IPv4/IPv6 address; no spaces, no shell or URL syntax.
const hostPattern = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[?[0-9A-Fa-f:.]+\]?)$/;
const userPattern = /^[a-z_][a-z0-9_.-]{0,31}$/i;

const invalid = (message: string) => new ConnectError(message, Code.InvalidArgument);

/** Checks what an operator gives; InvalidArgument naming the field and what is expected. */
export function checkSavedServer(input: SavedServerInput): void {
  if (!namePattern.test(input.name))
    throw invalid(`name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (got ${JSON.stringify(input.name)})`);
  if (input.host.length > 253 || !hostPattern.test(input.host)) throw invalid(`host: a host name or IP address (got ${JSON.stringify(input.host)})`);
  const port = input.port ?? 22;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid(`port: 1 to 65535 (got ${port})`);
  if (!userPattern.test(input.username)) throw invalid(`username: a Unix user name (got ${JSON.stringify(input.username)})`);
  if (input.credential.length === 0) throw invalid(input.authKind === "password" ? "password: empty" : "private key: empty");
  if (input.credential.length > 32_768) throw invalid("credential: longer than 32 KiB");
  if (input.authKind === "private_key") {
    const parsed = ssh2.utils.parseKey(input.credential);
    if (parsed instanceof Error) throw invalid(`private key: ${parsed.message} (an OpenSSH or PEM private key without a passphrase)`);
    const key = Array.isArray(parsed) ? parsed[0] : parsed;
    if (!key?.isPrivateKey()) throw invalid("private key: this is a public key; give the private key file");
  }
}

const rowOf = (r: Record<string, unknown>): SavedServer => ({
  id: r.id as string,
  name: r.name as string,
  host: r.host as string,
  port: r.port as number,
  username: r.username as string,
  authKind: r.auth_kind as AuthKind,
  hostKeyFingerprint: (r.host_key_fingerprint as string | null) ?? null,
  createdBy: r.created_by as string,
  createdAt: r.created_at as Date,
});

const publicColumns = ["id", "name", "host", "port", "username", "auth_kind", "host_key_fingerprint", "created_by", "created_at"];

/** Saves a server with its credential sealed; AlreadyExists when the name is taken. */
export async function addSavedServer(db: Knex, crypto: Client<typeof CryptoService>, input: SavedServerInput): Promise<SavedServer> {
  checkSavedServer(input);
  if (await db("saved_servers").where({ name: input.name }).first("id")) {
    throw new ConnectError(`a saved server named "${input.name}" exists; remove it first or choose another name`, Code.AlreadyExists);
  }
  const id = randomUUID();
  const { envelope } = await crypto.encrypt({
    plaintext: Buffer.from(input.credential, "utf8"),
    context: { table: "saved_servers", column: "ssh_credential_encrypted", rowId: id },
  });
  const [row] = await db("saved_servers")
    .insert({
      id,
      name: input.name,
      host: input.host,
      port: input.port ?? 22,
      username: input.username,
      auth_kind: input.authKind,
      ssh_credential_encrypted: envelope,
      created_by: input.createdBy,
    })
    .returning(publicColumns);
  return rowOf(row);
}

export async function listSavedServers(db: Knex): Promise<SavedServer[]> {
  return (await db("saved_servers").select(publicColumns).orderBy("name")).map(rowOf);
}

/** A saved server by name or id; NotFound naming what was asked. */
export async function findSavedServer(db: Knex, nameOrId: string): Promise<SavedServer> {
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(nameOrId);
  const row = await db("saved_servers")
    .where((q) => (uuid ? q.where({ id: nameOrId }).orWhere({ name: nameOrId }) : q.where({ name: nameOrId })))
    .first(publicColumns);
  if (!row) throw new ConnectError(`no saved server "${nameOrId}"; see \`npx myosicam server list\``, Code.NotFound);
  return rowOf(row);
}

/** Removes a saved server (and its sealed credential); NotFound when there is none. */
export async function removeSavedServer(db: Knex, nameOrId: string): Promise<SavedServer> {
  const server = await findSavedServer(db, nameOrId);
  await db("saved_servers").where({ id: server.id }).delete();
  return server;
}

/** Opens the sealed credential, for an install job only (kept in memory for the job's length). */
export async function openCredential(db: Knex, crypto: Client<typeof CryptoService>, id: string): Promise<string> {
  const row = await db("saved_servers").where({ id }).first("ssh_credential_encrypted");
  if (!row) throw new ConnectError(`saved server ${id} was removed`, Code.NotFound);
  const { plaintext } = await crypto.decrypt({
    envelope: row.ssh_credential_encrypted,
    context: { table: "saved_servers", column: "ssh_credential_encrypted", rowId: id },
  });
  return Buffer.from(plaintext).toString("utf8");
}

/** Pins a host key on first use: only while none is pinned (a concurrent first use keeps the first). Answers the pinned value. */
export async function pinHostKey(db: Knex, id: string, fingerprint: string): Promise<string> {
  await db("saved_servers").where({ id }).whereNull("host_key_fingerprint").update({ host_key_fingerprint: fingerprint });
  const row = await db("saved_servers").where({ id }).first("host_key_fingerprint");
  return row.host_key_fingerprint as string;
}

/** Forgets the pinned host key (the server was reinstalled): the next install pins what it is offered. */
export async function forgetHostKey(db: Knex, id: string): Promise<void> {
  await db("saved_servers").where({ id }).update({ host_key_fingerprint: null });
}
