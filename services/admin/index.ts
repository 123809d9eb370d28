import type { ConnectRouter } from "@connectrpc/connect";
import { AdminService } from "../../gen/myosicam/admin/v1/admin_pb.js";
import { LicenseService } from "../../gen/myosicam/license/v1/license_pb.js";
import { ConfigError, type Config } from "../lib/config.js";
import type { Knex } from "../lib/db.js";
import { createNonceRecorder } from "../lib/hmac/nonce-store.js";
import type { ServiceDeps, ServiceModule } from "../lib/service-module.js";
import { createKeyring, type Keyring } from "../lib/secrets/keyring.js";
import { refuseUnknownKeys } from "../lib/secrets/rotate.js";
import { createAdminService, createAdminSessionGate } from "./admin-service.js";
import { createCallerRegistry } from "./callers.js";
import { ensureDevelopmentTrust } from "./development-trust.js";
import { adminEncryptedColumns } from "./encrypted-columns.js";
import { createLicenseService } from "./license-service.js";
import { createLicenseBook } from "./licenses.js";
import { trustAndLicenses } from "./migrations/0001-trust-and-licenses.js";
import { createOperatorDesk } from "./operators.js";
import { deleteExpiredSessions, deleteOldLoginFailures } from "./store.js";

/** The services whose calls admin authenticates by HMAC against its callers table. */
export const signedAdminServices = [LicenseService] as const;

/** Admin's keyring from ADMIN_ENCRYPTION_KEY(_PREVIOUS); a ConfigError when unset. */
export function adminKeyringFromConfig(config: Config): Keyring {
  if (!config.adminEncryptionKeyHex) {
    throw new ConfigError(
      "ADMIN_ENCRYPTION_KEY",
      "is not set; admin seals caller secrets with it. Create one with `npx myosicam keys generate` and put it in config/.env (`npm start` generates it on first start)",
    );
  }
  return createKeyring(config.adminEncryptionKeyHex, config.previousAdminEncryptionKeyHex, "ADMIN_ENCRYPTION_KEY");
}

/** The callers registry over admin's database. */
export function adminCallers(db: Knex, config: Config) {
  return createCallerRegistry(db, adminKeyringFromConfig(config), signedAdminServices);
}

/** `myosicam.license.v1` (signed callers) and `myosicam.admin.v1` (admin operator sessions). */
export function adminRoutes(deps: ServiceDeps) {
  const book = createLicenseBook(deps.db);
  const admin = createAdminService({ db: deps.db, callers: adminCallers(deps.db, deps.config), book, desk: createOperatorDesk(deps.db) });
  const license = createLicenseService(book);
  return (router: ConnectRouter) => {
    router.service(LicenseService, license);
    router.service(AdminService, admin);
  };
}

export const adminService: ServiceModule = {
  name: "admin",
  listener: "admin",
  database: "admin",
  descriptors: [LicenseService, AdminService],
  migrations: [trustAndLicenses],
  encryptionKeys: "admin",
  routes: adminRoutes,
  signedCalls(deps) {
    // Concurrent signed calls check their nonces together: one statement per few milliseconds.
    const nonces = createNonceRecorder(deps.db);
    deps.onStop(() => nonces.stop());
    const callers = adminCallers(deps.db, deps.config);
    return {
      services: signedAdminServices,
      verifier: { findCaller: (id) => callers.findCaller(id), recordNonce: (id, nonce) => nonces.record(id, nonce) },
    };
  },
  gate: (deps) => createAdminSessionGate(createOperatorDesk(deps.db), deps.log),
  async checkStartup(deps) {
    await refuseUnknownKeys(deps.db, adminKeyringFromConfig(deps.config), adminEncryptedColumns, "ADMIN_ENCRYPTION_KEY", "caller secrets");
    if (deps.config.developmentTrust) await ensureDevelopmentTrust(deps.db, adminCallers(deps.db, deps.config), deps.config, deps.log);
  },
  jobs: (deps) => [
    {
      queue: "admin.session-purge",
      cron: "17 * * * *",
      async run(ctx) {
        const sessions = await deleteExpiredSessions(deps.db);
        const failures = await deleteOldLoginFailures(deps.db, 3600);
        await ctx.output(`removed ${sessions} expired admin sessions and ${failures} old failed-login records`);
      },
    },
  ],
};

// What admin's own commands (`myosicam caller|admin …` on the admin host) use of this service.
export { generateCallerSecret, type CallerInfo } from "./callers.js";
export { adminEncryptedColumns } from "./encrypted-columns.js";
export { createLicenseBook, generateLicenseKey, type LicenseInfo, type Plan } from "./licenses.js";
export { createOperatorDesk } from "./operators.js";
export { insertAudit } from "./store.js";
