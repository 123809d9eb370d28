import type { ServiceDeps } from "../../services/lib/service-module.js";

/** Deps for mounting one service alone: calls to other services or the queue fail loudly. */
export function soloServiceDeps(deps: Pick<ServiceDeps, "config" | "db" | "log">): ServiceDeps {
  return {
    ...deps,
    dbUrl: "",
    genericPlanDb: () => deps.db,
    ownCertificate: "",
    adminUrl: () => deps.config.adminUrl ?? "https://127.0.0.1:8444",
    panelUrl: () => deps.config.panelPublicUrl ?? "https://127.0.0.1:8443",
    listenerUrl: () => undefined,
    currentUsage: async () => ({ servers: 0, instances: 0 }),
    onStop: () => {},
    // Every error is the caller's to log, as when no database outage is being tracked.
    databaseOutage: { notice: () => false, down: false, stop: () => {} },
    transportFor: (service) => {
      throw new Error(`${service.typeName} is not available to a service mounted alone`);
    },
    enqueueJob: async (queue) => {
      throw new Error(`no job queue for ${queue} in a service mounted alone`);
    },
  };
}
