import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { RootMethod, type InstallerService } from "../../gen/myosicam/install/v1/install_pb.js";
import type { Knex } from "../lib/db.js";
import { installQueue, type InstallJobData, type RootMethodName } from "./install-job.js";
import { findSavedServer } from "./saved-servers.js";

const rootNames: Record<number, RootMethodName> = {
  [RootMethod.DIRECT]: "direct",
  [RootMethod.SUDO_PASSWORD]: "sudo_password",
  [RootMethod.SUDO_NOPASSWD]: "sudo_nopasswd",
};

/** Handlers of `myosicam.install.v1.InstallerService`: installs run as jobs. */
export function createInstallerService(deps: { db: Knex; enqueueJob(queue: string, data: Record<string, unknown>): Promise<string> }): ServiceImpl<typeof InstallerService> {
  return {
    async startInstall(req) {
      const saved = await findSavedServer(deps.db, req.server);
      const root = rootNames[req.root];
      if (!root) throw new ConnectError("root: direct, sudo_password or sudo_nopasswd", Code.InvalidArgument);
      if (root === "sudo_password" && saved.authKind !== "password") {
        throw new ConnectError(`root: sudo with a password needs a saved password, and ${saved.name} has a private key; use sudo_nopasswd or log in as root`, Code.FailedPrecondition);
      }
      const data: InstallJobData = { savedServerId: saved.id, root, oscamDirs: req.oscamDirs, requestedBy: req.requestedBy, waitSeconds: req.waitSeconds || 120 };
      return { jobId: await deps.enqueueJob(installQueue, { ...data }) };
    },
  };
}
