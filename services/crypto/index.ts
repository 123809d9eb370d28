import type { ConnectRouter } from "@connectrpc/connect";
import { CryptoService } from "../../gen/myosicam/crypto/v1/crypto_pb.js";
import { ConfigError } from "../lib/config.js";
import type { ServiceDeps, ServiceModule } from "../lib/service-module.js";
import { createKeyring, type Keyring } from "../lib/secrets/keyring.js";
import { secretTables } from "./migrations/0001-secret-tables.js";
import { unknownKeyIds } from "../lib/secrets/rotate.js";
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

/**
 * Refuses to start when stored secrets were sealed with a key this panel does not hold: serving
 * on would fail every decryption and, worse, mix keys. Typical cause: a lost or replaced
 * config/.env.
 */
async function checkKeys(deps: ServiceDeps): Promise<void> {
  const keyring = keyringFromConfig(deps.config);
  const unknown = await unknownKeyIds(deps.db, keyring, encryptedColumns);
  if (unknown.length > 0) {
    throw new ConfigError(
      "PANEL_ENCRYPTION_KEY",
      `stored secrets are sealed with key ${unknown.join(", ")}, which is not configured (active key is ${keyring.activeKeyId}); restore config/.env from backup, or set the old key as PANEL_ENCRYPTION_KEY_PREVIOUS`,
    );
  }
}

export const cryptoService: ServiceModule = {
  name: "crypto",
  // Not on any network listener until service-to-service signing exists: reachable only through
  // in-process transports.
  listener: "in-process",
  database: "panel",
  descriptors: [CryptoService],
  migrations: [secretTables],
  encryptionKeys: "panel",
  routes: cryptoRoutes,
  checkStartup: checkKeys,
};
