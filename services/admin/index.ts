import type { ConnectRouter } from "@connectrpc/connect";
import { LicenseService } from "../../gen/myosicam/license/v1/license_pb.js";
import type { ServiceDeps, ServiceModule } from "../lib/service-module.js";

/**
 * The vendor's admin deployable: `myosicam.license.v1` (and `myosicam.admin.v1` with the HMAC
 * issue). Licenses, plans and callers arrive with that issue; until then every method answers
 * Unimplemented.
 */
export function adminRoutes(_deps: ServiceDeps) {
  return (router: ConnectRouter) => {
    router.service(LicenseService, {});
  };
}

export const adminService: ServiceModule = {
  name: "admin",
  listener: "admin",
  database: "admin",
  descriptors: [LicenseService],
  migrations: [],
  routes: adminRoutes,
};
