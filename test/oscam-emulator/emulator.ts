import { createHash, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { parseOscamFile } from "../../agent/oscam/document.js";
import { readUserFile, type Account } from "../../agent/oscam/user-file.js";

/**
 * A stand-in for OScam's WebIF (OSCAM.md §6): HTTP digest auth as OScam does it (realm
 * "Forbidden", MD5, qop=auth), and `/userconfig.html?action=reinit` re-reading oscam.user from the
 * config dir, so tests can see what "OScam" loaded. Every request path is recorded.
 */
export interface OscamEmulator {
  port: number;
  /** The accounts loaded by the last reinit (file order). */
  loaded(): Account[];
  reloads(): number;
  paths(): string[];
  setCredentials(user: string, password: string): void;
  /**
   * Holds the next reinit request until `release()`: `reached` resolves when it arrived, so a test
   * can act while the agent is in the middle of an apply (file written, reload not answered).
   */
  holdNextReload(): { reached: Promise<void>; release(): void };
  /** Answers the next `count` reinit requests with HTTP 500 without re-reading the file (OScam failing the reload). */
  failNextReloads(count: number): void;
  /** Never answers the next `count` reinit requests (a WebIF that hangs): the connection stays open and silent. */
  hangNextReloads(count: number): void;
  stop(): Promise<void>;
}

const md5 = (text: string) => createHash("md5").update(text).digest("hex");

export async function startOscamEmulator(options: { configDir: string; user: string; password: string }): Promise<OscamEmulator> {
  let credentials = { user: options.user, password: options.password };
  let loaded: Account[] = [];
  let reloads = 0;
  const paths: string[] = [];
  const nonces = new Set<string>();
  let hold: { arrived: () => void; released: Promise<void> } | undefined;
  let failing = 0;
  let hanging = 0;
  const param = (header: string, name: string) => new RegExp(`${name}="?([^",]*)"?`, "i").exec(header)?.[1] ?? "";

  const authorised = (header: string | undefined, method: string): boolean => {
    if (!header?.startsWith("Digest ")) return false;
    const nonce = param(header, "nonce");
    if (!nonces.has(nonce) || param(header, "username") !== credentials.user) return false;
    const ha1 = md5(`${credentials.user}:Forbidden:${credentials.password}`);
    const ha2 = md5(`${method}:${param(header, "uri")}`);
    const expected = md5(`${ha1}:${nonce}:${param(header, "nc")}:${param(header, "cnonce")}:${param(header, "qop")}:${ha2}`);
    return expected === param(header, "response");
  };

  const server: Server = createServer((req, res) => {
    paths.push(req.url ?? "");
    if (!authorised(req.headers.authorization, req.method ?? "GET")) {
      const nonce = randomBytes(16).toString("hex");
      nonces.add(nonce);
      res.writeHead(401, {
        "www-authenticate": `Digest algorithm="MD5", realm="Forbidden", qop="auth", opaque="${randomBytes(8).toString("hex")}", nonce="${nonce}"`,
      });
      res.end("401 Unauthorized");
      return;
    }
    const url = new URL(req.url ?? "/", "http://oscam");
    if (url.pathname === "/userconfig.html" && url.searchParams.get("action") === "reinit") {
      if (hanging > 0) {
        hanging--;
        return;
      }
      if (failing > 0) {
        failing--;
        res.writeHead(500, { "content-type": "text/html" });
        res.end("<html><body>reinit failed</body></html>");
        return;
      }
      const held = hold;
      hold = undefined;
      held?.arrived();
      (held?.released ?? Promise.resolve())
        .then(() => readFile(join(options.configDir, "oscam.user")))
        .then(
          (bytes) => {
            loaded = readUserFile(parseOscamFile(bytes, "oscam.user")).accounts;
            reloads++;
            res.writeHead(200, { "content-type": "text/html" });
            res.end(`<html><body>${loaded.length} users</body></html>`);
          },
          () => {
            res.writeHead(500);
            res.end();
          },
        );
      return;
    }
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<html></html>");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    loaded: () => loaded,
    reloads: () => reloads,
    paths: () => [...paths],
    setCredentials: (user, password) => (credentials = { user, password }),
    holdNextReload() {
      let arrived!: () => void;
      let release!: () => void;
      const reached = new Promise<void>((resolve) => (arrived = resolve));
      hold = { arrived, released: new Promise<void>((resolve) => (release = resolve)) };
      return { reached, release };
    },
    failNextReloads: (count) => {
      failing = count;
    },
    hangNextReloads: (count) => {
      hanging = count;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // A hung request's connection would keep close() waiting.
        server.closeAllConnections();
      }),
  };
}
