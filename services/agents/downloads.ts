import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Knex } from "../lib/db.js";
import type { Logger } from "../lib/log.js";
import type { HttpRoute } from "../lib/server.js";
import { hashToken } from "./install-tokens.js";
import { insertDownloadAttempt, recentFailures, recordThrottledAttempt, selectInstallToken } from "./store.js";

export const downloadPathPrefix = "/install/agent/";
const artifactPattern = /^(linux)-(x64|arm64)$/;

/** The file name of an agent artifact for `<os>-<arch>`. */
export const artifactFileName = (target: string) => `myosicam-agent-${target}`;

/**
 * `GET /install/agent/<os>-<arch>` with `Authorization: Bearer <install token>`: streams the agent
 * artifact only for a token that is issued (not expired, consumed or revoked) — the bootstrap
 * downloads, then registers with the same token. Anything else gets 401 and no byte of the
 * artifact. Every attempt is a `download_attempts` row.
 */
export function createDownloadRoute(options: { db: Knex; artifactDir: string; log: Logger; failuresPerMinute: number }): HttpRoute {
  const { db, log } = options;
  return {
    method: "GET",
    pathPrefix: downloadPathPrefix,
    async handle(req, res, requestId) {
      const ip = (req.socket?.remoteAddress ?? "unknown").replace(/^::ffff:/, "");
      const target = (req.url ?? "").split("?")[0]!.slice(downloadPathPrefix.length);
      const artifact = artifactPattern.test(target) ? target : "(invalid)";
      // The scheme is case-insensitive (RFC 9110); the token is hex in either case.
      const token = /^bearer +([0-9a-f]{64})$/i.exec(String(req.headers.authorization ?? "").trim())?.[1]?.toLowerCase();
      const hashPrefix = token ? hashToken(token).slice(0, 8) : undefined;
      const refuse = async (status: number, reason: string, message: string) => {
        await insertDownloadAttempt(db, { ip, hashPrefix, outcome: "refused", reason, artifact });
        log.warn({ ip, reason, artifact, tokenHashPrefix: hashPrefix, requestId }, "agent download refused");
        res.writeHead(status, { "content-type": "application/json", ...(status === 401 ? { "www-authenticate": 'Bearer realm="myosicam-install"' } : {}) });
        res.end(JSON.stringify({ code: status === 401 ? "unauthenticated" : "not_found", message }));
      };
      if ((await recentFailures(db, "download_attempts", ip)) >= options.failuresPerMinute) {
        await recordThrottledAttempt(db, "download_attempts", { ip, hashPrefix, outcome: "refused", reason: "rate_limited", artifact });
        log.warn({ ip, requestId }, "agent download refused: too many failures from this address");
        res.writeHead(429, { "content-type": "application/json", "retry-after": "60" });
        res.end(JSON.stringify({ code: "resource_exhausted", message: `too many failed downloads from ${ip}; wait a minute before trying again` }));
        return;
      }
      if (!req.headers.authorization) return refuse(401, "missing_token", "send the install token as Authorization: Bearer <token>");
      if (!token) return refuse(401, "malformed_token", "the Authorization header is not `Bearer <64 hex characters>`");
      const row = await selectInstallToken(db, hashToken(token));
      if (!row) return refuse(401, "unknown_token", "install token rejected");
      if (row.state !== "issued") return refuse(401, row.state, "install token rejected");
      if (artifact === "(invalid)") return refuse(404, "unknown_artifact", `no agent for ${target}; available: linux-x64, linux-arm64`);
      const file = join(options.artifactDir, artifactFileName(artifact));
      const info = await stat(file).catch(() => undefined);
      if (!info?.isFile()) return refuse(404, "artifact_missing", `the agent for ${artifact} is not built on this panel (npm run build:agent)`);
      await insertDownloadAttempt(db, { ip, hashPrefix, outcome: "accepted", reason: "ok", artifact });
      log.info({ ip, artifact, tokenHashPrefix: hashPrefix, requestId }, "agent downloaded");
      res.writeHead(200, {
        "content-type": "application/octet-stream",
        "content-length": String(info.size),
        "content-disposition": `attachment; filename="${artifactFileName(artifact)}"`,
        "cache-control": "no-store",
      });
      await pipeline(createReadStream(file), res);
    },
  };
}
