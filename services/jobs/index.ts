import type { ConnectRouter } from "@connectrpc/connect";
import { JobService } from "../../gen/myosicam/jobs/v1/jobs_pb.js";
import type { ServiceDeps, ServiceModule } from "../lib/service-module.js";
import { createJobService } from "./service.js";

/** `myosicam.jobs.v1`: what the panel's background jobs are doing. */
export function jobsRoutes(deps: ServiceDeps) {
  const service = createJobService({ db: deps.db });
  return (router: ConnectRouter) => router.service(JobService, service);
}

export const jobsService: ServiceModule = {
  name: "jobs",
  // Panel-internal: reachable in process only until service callers are stored.
  listener: "in-process",
  database: "panel",
  descriptors: [JobService],
  migrations: [],
  routes: jobsRoutes,
};
