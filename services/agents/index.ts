import type { ConnectRouter } from "@connectrpc/connect";
import { AgentService } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { RegistrationService } from "../../gen/myosicam/agent/v1/registration_pb.js";
import type { ServiceDeps, ServiceModule } from "../lib/service-module.js";

/**
 * `myosicam.agent.v1`: what agents call. Registration, heartbeats, sync and the command stream
 * arrive with the enrollment, sync and command-channel issues; until then every method answers
 * Unimplemented, which Connect does for each method an implementation leaves out.
 */
export function agentsRoutes(_deps: ServiceDeps) {
  return (router: ConnectRouter) => {
    router.service(RegistrationService, {});
    router.service(AgentService, {});
  };
}

export const agentsService: ServiceModule = {
  name: "agents",
  listener: "panel",
  database: "panel",
  descriptors: [RegistrationService, AgentService],
  migrations: [],
  routes: agentsRoutes,
};
