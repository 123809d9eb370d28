import { readFile } from "node:fs/promises";
import { releaseKeyId } from "../lib/releases/manifest.js";
import { createClient, type ConnectRouter } from "@connectrpc/connect";
import { EnrollmentService } from "../../gen/myosicam/agent/v1/enrollment_pb.js";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { InstallerService } from "../../gen/myosicam/install/v1/install_pb.js";
import { JobService } from "../../gen/myosicam/jobs/v1/jobs_pb.js";
import { InstallService } from "../../gen/myosicam/panel/v1/install_pb.js";
import type { ServiceDeps, ServiceModule } from "../lib/service-module.js";
import { installJob, uninstallJob, type InstallDeps } from "./install-job.js";
import { createInstallService } from "./install-service.js";
import { savedServers } from "./migrations/0001-saved-servers.js";
import { installJobEvents } from "./migrations/0002-install-job-events.js";
import { createInstallerService } from "./service.js";

/**
 * `myosicam.install.v1`: installs the agent on a saved server over SSH, as a job whose steps and
 * output JobService shows (in-process: the network refuses it); and the operator API's
 * InstallService over it. What it needs of the agents' tables it asks EnrollmentService.
 */
export const installService: ServiceModule = {
  name: "install",
  listener: "panel",
  database: "panel",
  descriptors: [InstallerService, InstallService],
  migrations: [savedServers, installJobEvents],
  // Credentials are opened by the key holder; jobs and enrollment are asked in this process.
  requires: ["crypto", "jobs", "agents", "panel"],
  routes: (deps: ServiceDeps) => {
    const installer = createInstallerService({ db: deps.db, enqueueJob: deps.enqueueJob });
    const operator = createInstallService({
      db: deps.db,
      crypto: createClient(CryptoService, deps.transportFor(CryptoService)),
      jobs: createClient(JobService, deps.transportFor(JobService)),
      installer: createClient(InstallerService, deps.transportFor(InstallerService)),
    });
    return (router: ConnectRouter) => {
      router.service(InstallerService, installer);
      router.service(InstallService, operator);
    };
  },
  jobs: (deps) => {
    const installDeps: InstallDeps = {
      db: deps.db,
      crypto: createClient(CryptoService, deps.transportFor(CryptoService)),
      enrollment: createClient(EnrollmentService, deps.transportFor(EnrollmentService)),
      panelUrl: () => deps.panelUrl(),
      certificate: deps.ownCertificate,
      artifactDir: deps.config.agentArtifactDir,
      releaseKeyId: async () => {
        const file = deps.config.agentReleasePublicKeyFile;
        if (!file) return undefined;
        const pem = await readFile(file, "utf8").catch(() => {
          throw new Error(`AGENT_RELEASE_PUBLIC_KEY_FILE: cannot read ${file}`);
        });
        return releaseKeyId(pem);
      },
    };
    return [installJob(installDeps), uninstallJob(installDeps)];
  },
};
