import { createClient, type ConnectRouter } from "@connectrpc/connect";
import { AgentService } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { RegistrationService } from "../../gen/myosicam/agent/v1/registration_pb.js";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import type { Knex } from "../lib/db.js";
import { createNonceRecorder } from "../lib/hmac/nonce-store.js";
import { watchDeliveries } from "../lib/metrics.js";
import type { ServiceDeps, ServiceModule } from "../lib/service-module.js";
import { livenessJobs, raiseRecoveries } from "./alerts.js";
import { createDownloadRoute } from "./downloads.js";
import { createHeartbeatWriter } from "./heartbeats.js";
import { alertRecipients, serversAndTokens } from "./migrations/0001-servers-and-tokens.js";
import { instancesAndAccounts } from "./migrations/0002-instances.js";
import { commands } from "./migrations/0003-commands.js";
import { hostResources } from "./migrations/0004-host-resources.js";
import { attemptRepeats } from "./migrations/0005-attempt-repeats.js";
import { instanceProblems } from "./migrations/0006-instance-problems.js";
import { serverTags } from "./migrations/0007-server-tags.js";
import { CommandService } from "../../gen/myosicam/panel/v1/command_pb.js";
import { ServerService } from "../../gen/myosicam/panel/v1/server_pb.js";
import { createCommandService } from "./command-service.js";
import { AlertService } from "../../gen/myosicam/panel/v1/alert_pb.js";
import { createAlertService } from "./alert-service.js";
import { EnrollmentService } from "../../gen/myosicam/agent/v1/enrollment_pb.js";
import { createEnrollmentService } from "./enrollment-service.js";
import { InstanceService } from "../../gen/myosicam/panel/v1/instance_pb.js";
import { createInstanceService } from "./instance-service.js";
import { FleetService } from "../../gen/myosicam/panel/v1/fleet_pb.js";
import { createFleetEventHub, fleetEventRetentionSeconds, purgeFleetEvents } from "./fleet-events.js";
import { createFleetService } from "./fleet-service.js";
import { fleetEvents } from "./migrations/0010-fleet-events.js";
import { sealedTables } from "./migrations/0009-sealed-tables.js";
import { alertAcknowledgement } from "./migrations/0008-alert-acknowledgement.js";
import { changeSets } from "./migrations/0011-change-sets.js";
import { agentReleases } from "./migrations/0012-agent-releases.js";
import { rollouts } from "./migrations/0013-rollouts.js";
import { busySpells } from "./migrations/0014-busy-spells.js";
import { heartbeatsInPlace } from "./migrations/0015-heartbeats-in-place.js";
import { createBusySpellRecorder } from "./busy-spells.js";
import { RolloutService } from "../../gen/myosicam/panel/v1/rollout_pb.js";
import { createRolloutService } from "./rollout-service.js";
import { startRolloutTicker } from "./rollouts.js";
import { AccountService } from "../../gen/myosicam/panel/v1/account_pb.js";
import { createAccountService } from "./account-service.js";
import { currentStanding } from "../lib/licensing/check.js";
import { requireQuota } from "../lib/licensing/standing.js";
import { createServerService } from "./server-service.js";
import { createDeliveryWindow, deliveryAnswerTimeoutMs } from "./delivery-window.js";
import { createSyncQueue, type SyncQueue, syncBacklogGate } from "./sync-queue.js";
import { createCommandClaimer, createCommandHub, createResultWriter, expireCommands } from "./commands.js";
import { countLiveInstances, purgeResourceSamples, resourceRetentionDays } from "./sync.js";
import { auditMalformedRegistrations, createAgentService, createAgentTrust, createRegistrationService, keepaliveMs } from "./service.js";
import { countActiveServers } from "./store.js";

const cryptoOf = (deps: ServiceDeps) => createClient(CryptoService, deps.transportFor(CryptoService));

/** Opens an envelope of `email_settings` through the crypto service. */
const openEmailSecret = (deps: ServiceDeps) => async (envelope: string, column: string, rowId: string) =>
  Buffer.from((await cryptoOf(deps).decrypt({ envelope, context: { table: "email_settings", column, rowId } })).plaintext).toString("utf8");

/**
 * `myosicam.agent.v1`: what agents call. Registration (install token), heartbeats (signed with
 * the agent token), liveness with alerts, and the gated agent download. Sync and the command
 * stream arrive with their issues (those methods answer Unimplemented until then).
 */
/** For `myosicam release upload`, run on the panel host with its database (a release is tens of MB: not an RPC). */
export { uploadRelease, type UploadOutcome } from "./releases.js";

/**
 * The sync queue of this process, shared by the service and its gate (the host hands each its own
 * copy of the deps, with the same database).
 */
const syncQueues = new WeakMap<ServiceDeps["db"], SyncQueue>();
function syncQueueOf(deps: ServiceDeps): SyncQueue {
  let queue = syncQueues.get(deps.db);
  if (!queue) syncQueues.set(deps.db, (queue = createSyncQueue(deps.log)));
  return queue;
}

export function agentsRoutes(deps: ServiceDeps) {
  const crypto = cryptoOf(deps);
  // The statements every agent call makes run on the pool that plans them once (db.ts, `prepared`).
  const writer = createHeartbeatWriter(deps.genericPlanDb(), deps.log, (servers) => raiseRecoveries(deps.db, deps.enqueueJob, servers), deps.databaseOutage);
  deps.onStop(() => writer.stop());
  const registration = createRegistrationService({ db: deps.db, config: deps.config, crypto, currentUsage: deps.currentUsage, log: deps.log });
  const hub = createCommandHub(deps.db, deps.dbUrl, deps.log, keepaliveMs);
  deps.onStop(() => hub.stop());
  const fleetHub = createFleetEventHub(deps.db, deps.dbUrl, deps.log);
  deps.onStop(() => fleetHub.stop());
  const results = createResultWriter(deps.db, crypto);
  deps.onStop(() => results.stop());
  const claimer = createCommandClaimer(deps.genericPlanDb(), crypto);
  deps.onStop(() => claimer.stop());
  // Every panel process advances the rollouts; one at a time per rollout (its row is locked).
  const ticker = startRolloutTicker(deps.db, crypto, deps.log);
  deps.onStop(() => ticker.stop());
  const deliveries = createDeliveryWindow({ limit: deps.config.agentCommandsInFlight, answerTimeoutMs: deliveryAnswerTimeoutMs });
  deps.onStop(async () => deliveries.stop());
  watchDeliveries(deliveries.state);
  const agent = createAgentService({
    writer,
    intervalSeconds: deps.config.agentHeartbeatIntervalSeconds,
    db: deps.db,
    crypto,
    hub,
    claimer,
    results,
    deliveries,
    syncs: syncQueueOf(deps),
  });
  // The operator API over this service's tables; the panel service authenticates, authorizes and
  // audits every call before these handlers run.
  const servers = createServerService({ db: deps.db, panelUrl: deps.panelUrl, certificate: deps.ownCertificate });
  const commands = createCommandService({ db: deps.db, crypto });
  const alerts = createAlertService({
    db: deps.db,
    crypto,
    heartbeatIntervalSeconds: deps.config.agentHeartbeatIntervalSeconds,
    defaultMissedHeartbeats: deps.config.agentMissedHeartbeats,
  });
  return (router: ConnectRouter) => {
    router.service(RegistrationService, registration);
    router.service(AgentService, agent);
    router.service(ServerService, servers);
    router.service(CommandService, commands);
    router.service(RolloutService, createRolloutService({ db: deps.db, crypto }));
    router.service(AlertService, alerts);
    router.service(InstanceService, createInstanceService({ db: deps.db }));
    router.service(
      AccountService,
      createAccountService({
        db: deps.db,
        crypto,
        // Changes need a usable license, as every other change does (nothing is added to the quotas).
        requireLicense: async () => requireQuota(await currentStanding(deps.db, deps.config.licenseKey), await deps.currentUsage(), {}),
      }),
    );
    router.service(
      FleetService,
      createFleetService({
        db: deps.db,
        hub: fleetHub,
        licenseStanding: () => currentStanding(deps.db, deps.config.licenseKey),
        currentUsage: deps.currentUsage,
        approvalRequired: deps.config.requireAgentApproval,
        heartbeatIntervalSeconds: deps.config.agentHeartbeatIntervalSeconds,
        defaultMissedHeartbeats: deps.config.agentMissedHeartbeats,
      }),
    );
    // For other panel services in this process (the installer); refused on the network.
    router.service(EnrollmentService, createEnrollmentService({ db: deps.db }));
  };
}

export const agentsService: ServiceModule = {
  name: "agents",
  listener: "panel",
  database: "panel",
  descriptors: [
    RegistrationService,
    AgentService,
    ServerService,
    CommandService,
    RolloutService,
    AlertService,
    InstanceService,
    AccountService,
    FleetService,
    EnrollmentService,
  ],
  routine: [AgentService],
  migrations: [
    serversAndTokens,
    alertRecipients,
    instancesAndAccounts,
    commands,
    hostResources,
    attemptRepeats,
    instanceProblems,
    serverTags,
    alertAcknowledgement,
    sealedTables,
    fleetEvents,
    changeSets,
    agentReleases,
    rollouts,
    busySpells,
    heartbeatsInPlace,
  ],
  // The agent tokens are sealed and opened by the key holder, in this process; the operator API's
  // authentication, authorization and audit are the panel service's, in this process too.
  requires: ["crypto", "panel"],
  routes: agentsRoutes,
  // Every agent holds its command stream open for as long as it runs.
  heldStreams: [AgentService.method.subscribe],
  // Syncs wait in the sync queue (sync-queue.ts: 4 stored at a time, 64 waiting, the rest refused
  // by its gate); registrations in batches (at most 200 under way, the rest refused by the handler).
  ownQueues: [AgentService.method.sync, RegistrationService.method.register],
  // Written down for every replica's liveness scan: an agent refused while the panel was busy was not silent.
  onRefusalSpell(deps) {
    const spells = createBusySpellRecorder(deps.db, deps.log, deps.databaseOutage);
    deps.onStop(() => spells.flush());
    return (spell) => spells.record(spell);
  },
  signedCalls(deps) {
    // Concurrent signed calls check their nonces together: one statement per few milliseconds.
    const nonces = createNonceRecorder(deps.genericPlanDb());
    deps.onStop(() => nonces.stop());
    const trust = createAgentTrust(deps.genericPlanDb(), cryptoOf(deps));
    return {
      services: [AgentService],
      verifier: { findCaller: (id) => trust.findCaller(id), recordNonce: (id, nonce) => nonces.record(id, nonce) },
    };
  },
  // A full sync queue refuses a sync before its signature is checked or its body read.
  gate: (deps) => syncBacklogGate(syncQueueOf(deps)),
  interceptors: (deps) => [auditMalformedRegistrations(deps.db, deps.log)],
  httpRoutes: (deps) => [
    createDownloadRoute({
      db: deps.db,
      artifactDir: deps.config.agentArtifactDir,
      log: deps.log,
      failuresPerMinute: deps.config.registrationFailuresPerMinute,
    }),
  ],
  jobs: (deps) => [
    ...livenessJobs({
      db: deps.db,
      enqueue: deps.enqueueJob,
      open: openEmailSecret(deps),
      intervalSeconds: deps.config.agentHeartbeatIntervalSeconds,
      missed: deps.config.agentMissedHeartbeats,
    }),
    {
      queue: "agents.command-expiry",
      cron: "* * * * *",
      async run(ctx) {
        await ctx.output(`${await expireCommands(deps.db)} commands expired`);
      },
    },
    {
      queue: "agents.fleet-event-retention",
      cron: "7 * * * *",
      async run(ctx) {
        await ctx.output(`deleted ${await purgeFleetEvents(deps.db)} fleet events older than ${fleetEventRetentionSeconds / 3600} hours`);
      },
    },
    {
      queue: "agents.resource-retention",
      cron: "23 3 * * *",
      async run(ctx) {
        await ctx.output(`deleted ${await purgeResourceSamples(deps.db)} resource readings older than ${resourceRetentionDays} days`);
      },
    },
  ],
  usage: async (db: Knex) => ({ servers: await countActiveServers(db), instances: await countLiveInstances(db) }),
};
