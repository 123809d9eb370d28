import { readFile, stat } from "node:fs/promises";
import { extname, join, normalize, resolve, sep } from "node:path";
import { promisify } from "node:util";
import { brotliCompress, constants as zlib, gzip as gzipCallback } from "node:zlib";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { HttpRoute } from "../lib/server.js";

/** Where `web/build.ts` puts the console's bundle. */
export const consoleDistDir = resolve(import.meta.dirname, "../../web/dist");

/**
 * The console's pages may load only what the panel serves, and talk only to it. Styles allow
 * 'unsafe-inline' for the style attributes React and uPlot set; scripts stay 'self' only.
 */
export const consoleSecurityPolicy = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const brotli = promisify(brotliCompress);
const gzip = promisify(gzipCallback);

const contentTypes: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
};

interface CachedFile {
  type: string;
  raw: Buffer;
  gzip: Buffer;
  brotli: Buffer;
  mtimeMs: number;
}

/** Paths that belong to the API or the agent, never to the console (an unknown RPC stays a 404). */
const notConsole = (path: string) => path.startsWith("/myosicam.") || path.startsWith("/grpc.") || path.startsWith("/install/");

/**
 * Serves the console: files of `web/dist` (hashed assets cached for a year, sent compressed, kept
 * in memory), and `index.html` for every other page path, so a reload or a shared link of
 * `/servers/…` opens that page. Missing bundle: a 503 page that says how to build it.
 */
export function consoleRoute(dir = consoleDistDir): HttpRoute {
  // One entry per file and version, shared by concurrent first requests.
  const cache = new Map<string, { mtimeMs: number; entry: Promise<CachedFile> }>();

  /** The build's own compressed copy (web/build.ts writes `.br` and `.gz` beside each file), else one made now, off the event loop. */
  const compressed = async (file: string, suffix: ".br" | ".gz", raw: Buffer): Promise<Buffer> => {
    const prebuilt = await readFile(file + suffix).catch(() => undefined);
    if (prebuilt) return prebuilt;
    return suffix === ".br" ? brotli(raw, { params: { [zlib.BROTLI_PARAM_QUALITY]: 5 } }) : gzip(raw, { level: 6 });
  };

  const read = async (file: string, mtimeMs: number): Promise<CachedFile> => {
    const raw = await readFile(file);
    const type = contentTypes[extname(file)] ?? "application/octet-stream";
    const compressible = type.startsWith("text/") || type.includes("json") || type.includes("svg");
    const [br, gz] = compressible ? await Promise.all([compressed(file, ".br", raw), compressed(file, ".gz", raw)]) : [raw, raw];
    return { type, raw, gzip: gz, brotli: br, mtimeMs };
  };

  const load = async (file: string): Promise<CachedFile | undefined> => {
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) return undefined;
    const hit = cache.get(file);
    if (hit && hit.mtimeMs === info.mtimeMs) return hit.entry;
    if (cache.size > 500) cache.clear();
    const entry = read(file, info.mtimeMs);
    cache.set(file, { mtimeMs: info.mtimeMs, entry });
    entry.catch(() => cache.delete(file));
    return entry;
  };

  const send = (req: Http2ServerRequest, res: Http2ServerResponse, file: CachedFile, cacheControl: string) => {
    const accepts = String(req.headers["accept-encoding"] ?? "");
    const compressed = file.brotli !== file.raw;
    const [body, encoding] =
      compressed && /\bbr\b/.test(accepts) ? [file.brotli, "br"] : compressed && /\bgzip\b/.test(accepts) ? [file.gzip, "gzip"] : [file.raw, undefined];
    res.writeHead(200, {
      "content-type": file.type,
      "content-length": body.length,
      "cache-control": cacheControl,
      vary: "accept-encoding",
      ...(encoding && { "content-encoding": encoding }),
      ...(file.type.startsWith("text/html") && { "content-security-policy": consoleSecurityPolicy }),
    });
    res.end(body);
  };

  return {
    method: "GET",
    pathPrefix: "/",
    fallback: true,
    async handle(req, res) {
      let path: string;
      try {
        path = decodeURIComponent((req.url ?? "/").split("?")[0] ?? "/");
      } catch {
        res.writeHead(400, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
        res.end("The path is not valid percent-encoding.");
        return;
      }
      if (notConsole(path) || path.includes("\0")) {
        res.writeHead(404, { "content-type": "application/json", "cache-control": "no-store" });
        res.end(JSON.stringify({ code: "not_found", message: `no such endpoint: ${path}` }));
        return;
      }
      const wanted = normalize(join(dir, path));
      if (wanted.startsWith(dir + sep) && extname(wanted) !== "") {
        const file = await load(wanted);
        if (file) return send(req, res, file, path.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "public, max-age=3600");
        if (path.startsWith("/assets/")) {
          // An asset of an older build (the page was open across an upgrade): the page must reload.
          res.writeHead(404, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
          res.end("This file belongs to an older version of the console: reload the page.");
          return;
        }
      }
      const index = await load(join(dir, "index.html"));
      if (index) return send(req, res, index, "no-cache");
      res.writeHead(503, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", "retry-after": "30" });
      res.end(
        "The console is not built on this panel. `npm start` builds it; with `myosicam serve`, run `npm run build:web` first.\nThe operator API and the command line work without it.\n",
      );
    },
  };
}
