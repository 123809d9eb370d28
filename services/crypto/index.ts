import type { ConnectRouter } from "@connectrpc/connect";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { ConfigError } from "../lib/config.js";
import type { ServiceDeps, ServiceModule } from "../lib/service-module.js";
import { createKeyring, type Keyring } from "../lib/secrets/keyring.js";
import { refuseUnknownKeys } from "../lib/secrets/rotate.js";
import { encryptedColumns } from "./encrypted-columns.js";
import { createCryptoService } from "./service.js";

/** The keyring from the configuration; a ConfigError when no key is configured. */
export function keyringFromConfig(config: ServiceDeps["config"]): Keyring {
  if (!config.encryptionKeyHex) {
    throw new ConfigError("PANEL_ENCRYPTION_KEY", "is not set; create one with `npx myosicam keys generate` and put it in config/.env");
  }
  return createKeyring(config.encryptionKeyHex, config.previousEncryptionKeyHex);
}

/** `myosicam.crypto.v1`: the only holder of PANEL_ENCRYPTION_KEY. */
export function cryptoRoutes(deps: ServiceDeps) {
  const service = createCryptoService({ keyring: keyringFromConfig(deps.config), db: deps.db });
  return (router: ConnectRouter) => router.service(CryptoService, service);
}

/** Refuses to start when stored secrets were sealed with a key this panel does not hold. */
async function checkKeys(deps: ServiceDeps): Promise<void> {
  await refuseUnknownKeys(deps.db, keyringFromConfig(deps.config), encryptedColumns, "PANEL_ENCRYPTION_KEY", "stored secrets");
}

export const cryptoService: ServiceModule = {
  name: "crypto",
  // The key holder is on no network listener: only this process's services reach it.
  listener: "in-process",
  database: "panel",
  descriptors: [CryptoService],
  // Its first migration once created other services' tables; they create their own now
  // (agents/0009_sealed_tables, install/0001_saved_servers). The key holder owns no table.
  migrations: [],
  encryptionKeys: "panel",
  routes: cryptoRoutes,
  checkStartup: checkKeys,
};

// What `myosicam keys …` (the key holder's own commands on the panel host) uses.
export { encryptedColumns } from "./encrypted-columns.js";
