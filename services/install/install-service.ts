import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client, type ServiceImpl } from "@connectrpc/connect";
import type { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { RootMethod, type InstallerService } from "../../gen/myosicam/install/v1/install_pb.js";
import { JobState, type Job, type JobService } from "../../gen/myosicam/jobs/v1/jobs_pb.js";
import {
  InstallJobState,
  RootAccess,
  SshAuthKind,
  type InstallJobSchema,
  type InstallService,
  type SavedServerSchema,
} from "../../gen/myosicam/panel/v1/install_pb.js";
import type { Knex } from "../lib/db.js";
import { timestampOf } from "../lib/timestamps.js";
import { principalOf, writeDb } from "../lib/principal.js";
import { installQueue, uninstallQueue } from "./install-job.js";
import { addSavedServer, findSavedServer, forgetHostKey, listSavedServers, removeSavedServer, type SavedServer } from "./saved-servers.js";

function savedServerMessage(s: SavedServer): MessageInitShape<typeof SavedServerSchema> {
  return {
    id: s.id,
    name: s.name,
    host: s.host,
    port: s.port,
    username: s.username,
    authKind: s.authKind === "password" ? SshAuthKind.PASSWORD : SshAuthKind.PRIVATE_KEY,
    hostKeyFingerprint: s.hostKeyFingerprint ?? "",
    createdBy: s.createdBy,
    createdAt: timestampOf(s.createdAt),
  };
}

const jobStates: Record<JobState, InstallJobState> = {
  [JobState.UNSPECIFIED]: InstallJobState.UNSPECIFIED,
  [JobState.QUEUED]: InstallJobState.QUEUED,
  [JobState.RUNNING]: InstallJobState.RUNNING,
  [JobState.SUCCEEDED]: InstallJobState.SUCCEEDED,
  [JobState.FAILED]: InstallJobState.FAILED,
  [JobState.CANCELLED]: InstallJobState.CANCELLED,
};

const installQueues = new Map([
  [installQueue, "install"],
  [uninstallQueue, "uninstall"],
]);

function jobMessage(job: Job): MessageInitShape<typeof InstallJobSchema> {
  return {
    id: job.id,
    kind: installQueues.get(job.queue) ?? job.queue,
    state: jobStates[job.state],
    step: job.step,
    percent: job.percent,
    error: job.error,
    createdAt: job.createdAt,
    finishedAt: job.finishedAt,
  };
}

const roots: Record<RootAccess, RootMethod> = {
  [RootAccess.UNSPECIFIED]: RootMethod.UNSPECIFIED,
  [RootAccess.DIRECT]: RootMethod.DIRECT,
  [RootAccess.SUDO_PASSWORD]: RootMethod.SUDO_PASSWORD,
  [RootAccess.SUDO_NOPASSWD]: RootMethod.SUDO_NOPASSWD,
};

export interface InstallServiceDeps {
  db: Knex;
  crypto: Client<typeof CryptoService>;
  jobs: Client<typeof JobService>;
  /** The installer (in process): it checks the target and queues the job. */
  installer: Client<typeof InstallerService>;
}

/** Handlers of `myosicam.panel.v1.InstallService`: the operator's side of SSH installs. */
export function createInstallService(deps: InstallServiceDeps): ServiceImpl<typeof InstallService> {
  const { db } = deps;
  /** An install or uninstall job; any other job id is NotFound (other jobs are the panel's own). */
  const installJob = async (id: string): Promise<Job> => {
    const job = await deps.jobs.get({ id }).then(
      (r) => r.job,
      () => undefined,
    );
    if (!job || !installQueues.has(job.queue)) throw new ConnectError(`no install job ${id}; see InstallService.ListInstallJobs`, Code.NotFound);
    return job;
  };
  return {
    async addSavedServer(req, ctx) {
      const principal = principalOf(ctx);
      const saved = await addSavedServer(writeDb(ctx, db), deps.crypto, {
        name: req.name,
        host: req.host,
        port: req.port || 22,
        username: req.username,
        authKind: req.credential.case === "privateKey" ? "private_key" : "password",
        credential: req.credential.value ?? "",
        createdBy: principal.name,
      });
      writeDb(ctx, db, `saved_server:${saved.id}`);
      return { server: savedServerMessage(saved) };
    },

    async listSavedServers() {
      return { servers: (await listSavedServers(db)).map(savedServerMessage) };
    },

    async removeSavedServer(req, ctx) {
      const trx = writeDb(ctx, db);
      const removed = await removeSavedServer(trx, req.server);
      writeDb(ctx, db, `saved_server:${removed.id}`);
      return { server: savedServerMessage(removed) };
    },

    async forgetHostKey(req, ctx) {
      const trx = writeDb(ctx, db);
      const saved = await findSavedServer(trx, req.server);
      writeDb(ctx, db, `saved_server:${saved.id}`);
      await forgetHostKey(trx, saved.id);
      return { server: savedServerMessage({ ...saved, hostKeyFingerprint: null }), forgottenFingerprint: saved.hostKeyFingerprint ?? "" };
    },

    async startInstall(req, ctx) {
      const principal = principalOf(ctx);
      if (req.waitSeconds !== 0 && req.waitSeconds < 10) throw new ConnectError("wait_seconds: at least 10 (or 0 for 120)", Code.InvalidArgument);
      const { jobId } = await deps.installer.startInstall({
        server: req.server,
        root: roots[req.root],
        oscamDirs: req.oscamDirs,
        requestedBy: principal.name,
        waitSeconds: req.waitSeconds || 120,
      });
      writeDb(ctx, db, `saved_server:${req.server}`, `job:${jobId}`);
      return { jobId };
    },

    async startUninstall(req, ctx) {
      const principal = principalOf(ctx);
      const { jobId } = await deps.installer.startUninstall({ server: req.server, root: roots[req.root], requestedBy: principal.name });
      writeDb(ctx, db, `saved_server:${req.server}`, `job:${jobId}`);
      return { jobId };
    },

    async listInstallJobs(req) {
      const limit = req.limit || 50;
      const lists = await Promise.all([...installQueues.keys()].map((queue) => deps.jobs.list({ queue, limit })));
      const jobs = lists
        .flatMap((l) => l.jobs)
        .sort((a, b) => Number((b.createdAt?.seconds ?? 0n) - (a.createdAt?.seconds ?? 0n)))
        .slice(0, limit);
      return { jobs: jobs.map(jobMessage) };
    },

    async *watchInstallJob(req, ctx) {
      await installJob(req.jobId);
      for await (const update of deps.jobs.watch({ id: req.jobId }, { signal: ctx.signal, timeoutMs: 0 })) {
        if (update.update.case === "job") yield { update: { case: "job", value: jobMessage(update.update.value) } };
        else if (update.update.case === "event") {
          const event = update.update.value.event;
          if (event.case === "progress") yield { update: { case: "step", value: { name: event.value.step, percent: event.value.percent } } };
          else if (event.case === "logLine") yield { update: { case: "outputLine", value: event.value } };
        }
      }
    },
  };
}
