import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { EnrollmentService } from "../../gen/myosicam/agent/v1/enrollment_pb.js";
import type { Knex } from "../lib/db.js";
import { timestampOf } from "../lib/timestamps.js";
import { createInstallToken } from "./install-tokens.js";
import { revokeServer, selectServerByName } from "./store.js";

/**
 * Handlers of `myosicam.agent.v1.EnrollmentService`: what the installer needs from this service's
 * tables, so that it never reads or writes them itself. In-process only (the gate refuses it on
 * the network).
 */
export function createEnrollmentService(deps: { db: Knex }): ServiceImpl<typeof EnrollmentService> {
  const { db } = deps;
  return {
    async issueInstallToken(req) {
      const { token, info } = await createInstallToken(db, { server: req.serverName, ttlSeconds: req.ttlSeconds, createdBy: req.createdBy });
      return { token, hashPrefix: info.hashPrefix, serverId: info.serverId, expiresAt: timestampFromDate(info.expiresAt) };
    },

    async getServerLiveness(req) {
      const row = await selectServerByName(db, req.serverName);
      if (!row) throw new ConnectError(`no server ${req.serverName}`, Code.NotFound);
      return { serverId: row.id, status: row.status, lastSeenAt: timestampOf(row.last_seen_at) };
    },

    async revokeServerByName(req) {
      const row = await selectServerByName(db, req.serverName);
      return { revoked: row ? Boolean(await revokeServer(db, row.id)) : false };
    },
  };
}
