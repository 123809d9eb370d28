import { createClient, type ConnectRouter } from "@connectrpc/connect";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { InstallerService } from "../../gen/myosicam/install/v1/install_pb.js";
import type { ServiceDeps, ServiceModule } from "../lib/service-module.js";
import { installJob, uninstallJob, type InstallDeps } from "./install-job.js";
import { createInstallerService } from "./service.js";

/**
 * `myosicam.install.v1`: installs the agent on a saved server over SSH, as a job whose steps and
 * output JobService shows. In-process: the operator API and the CLI reach it in the panel process.
 */
export const installService: ServiceModule = {
  name: "install",
  listener: "in-process",
  database: "panel",
  descriptors: [InstallerService],
  migrations: [],
  // Credentials are opened by the key holder; the install token and the wait use the agents' tables.
  requires: ["crypto", "jobs", "agents"],
  routes: (deps: ServiceDeps) => (router: ConnectRouter) =>
    router.service(InstallerService, createInstallerService({ db: deps.db, enqueueJob: deps.enqueueJob })),
  jobs: (deps) => {
    const installDeps: InstallDeps = {
      db: deps.db,
      crypto: createClient(CryptoService, deps.transportFor(CryptoService)),
      panelUrl: () => deps.panelUrl(),
      certificate: deps.ownCertificate,
      artifactDir: deps.config.agentArtifactDir,
    };
    return [installJob(installDeps), uninstallJob(installDeps)];
  },
};
