import { adminService } from "./admin/index.js";
import { agentsService } from "./agents/index.js";
import { cryptoService } from "./crypto/index.js";
import { installService } from "./install/index.js";
import { jobsService } from "./jobs/index.js";
import { licensingService } from "./licensing/index.js";
import { panelService } from "./panel/index.js";
import type { ServiceModule } from "./lib/service-module.js";

/** Every service a MyOsicam process can host, by name; read by `up` and `serve`. */
export const serviceRegistry: readonly ServiceModule[] = [
  cryptoService,
  jobsService,
  licensingService,
  agentsService,
  installService,
  adminService,
  // Last: its first start (the owner's password, printed once) runs after every other service started.
  panelService,
];

/** The services named in `names` (comma-separated list of registry names), in registry order. */
export function selectServices(names: readonly string[]): ServiceModule[] {
  const known = new Map(serviceRegistry.map((s) => [s.name, s]));
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length > 0) {
    throw new Error(`unknown service ${unknown.join(", ")}; known services: ${[...known.keys()].join(", ")}`);
  }
  if (names.length === 0) throw new Error(`name at least one service; known services: ${[...known.keys()].join(", ")}`);
  for (const name of names) {
    const missing = (known.get(name)!.requires ?? []).filter((r) => !names.includes(r));
    if (missing.length > 0) throw new Error(`${name} needs ${missing.join(", ")} in the same process: run --services=${[...missing, ...names].join(",")}`);
  }
  return serviceRegistry.filter((s) => names.includes(s.name));
}
