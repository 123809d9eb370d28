import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { RootMethod, type InstallerService } from "../../gen/myosicam/install/v1/install_pb.js";
import type { Knex } from "../lib/db.js";
import { installQueue, uninstallQueue, type InstallJobData, type RootMethodName, type UninstallJobData } from "./install-job.js";
import { findSavedServer } from "./saved-servers.js";

const rootNames: Record<number, RootMethodName> = {
  [RootMethod.DIRECT]: "direct",
  [RootMethod.SUDO_PASSWORD]: "sudo_password",
  [RootMethod.SUDO_NOPASSWD]: "sudo_nopasswd",
};

/** Handlers of `myosicam.install.v1.InstallerService`: installs run as jobs. */
export function createInstallerService(deps: {
  db: Knex;
  enqueueJob(queue: string, data: Record<string, unknown>): Promise<string>;
}): ServiceImpl<typeof InstallerService> {
  /** The saved server and how to become root there; refuses sudo with a password for a key. */
  const target = async (server: string, method: RootMethod) => {
    const saved = await findSavedServer(deps.db, server);
    const root = rootNames[method];
    if (!root) throw new ConnectError("root: direct, sudo_password or sudo_nopasswd", Code.InvalidArgument);
    if (root === "sudo_password" && saved.authKind !== "password") {
      throw new ConnectError(
        `root: sudo with a password needs a saved password, and ${saved.name} has a private key; use sudo_nopasswd or log in as root`,
        Code.FailedPrecondition,
      );
    }
    return { saved, root };
  };
  return {
    async startInstall(req) {
      const { saved, root } = await target(req.server, req.root);
      const data: InstallJobData = {
        savedServerId: saved.id,
        root,
        oscamDirs: req.oscamDirs,
        requestedBy: req.requestedBy,
        waitSeconds: req.waitSeconds || 120,
      };
      return { jobId: await deps.enqueueJob(installQueue, { ...data }) };
    },
    async startUninstall(req) {
      const { saved, root } = await target(req.server, req.root);
      const data: UninstallJobData = { savedServerId: saved.id, root, requestedBy: req.requestedBy };
      return { jobId: await deps.enqueueJob(uninstallQueue, { ...data }) };
    },
  };
}
