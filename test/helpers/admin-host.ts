import { readFile } from "node:fs/promises";
import { createClient, type Client } from "@connectrpc/connect";
import { LicenseService } from "../../gen/myosicam/license/v1/license_pb.js";
import { adminCallers } from "../../services/admin/index.js";
import { createLicenseBook } from "../../services/admin/licenses.js";
import { selectServices } from "../../services/index.js";
import { startHost, type Host } from "../../services/host.js";
import { loadConfig, type Config } from "../../services/lib/config.js";
import { createDatabase, type Knex } from "../../services/lib/db.js";
import { createSignedTransport } from "../../services/lib/hmac/signing-client.js";
import { makeTempDir } from "./cli.js";
import { createTestDatabase, type TestDatabase } from "./database.js";
import { oldKey } from "./keys.js";
import { captureLogs } from "./log-capture.js";

/** Admin served by a real host over HTTPS on a fresh database, with direct access to its stores. */
export interface AdminHost {
  host: Host;
  url: string;
  ca: string;
  certFile: string;
  config: Config;
  db: Knex;
  callers: ReturnType<typeof adminCallers>;
  book: ReturnType<typeof createLicenseBook>;
  logs: ReturnType<typeof captureLogs>;
  /** A LicenseService client signing as `callerId` with `secret`. */
  licenseClient(callerId: string, secret: string, httpVersion?: "1.1" | "2"): Client<typeof LicenseService>;
  stop(): Promise<void>;
}

export async function startAdminHost(label: string, env: Record<string, string> = {}): Promise<AdminHost> {
  const dir = await makeTempDir(label);
  const database: TestDatabase = await createTestDatabase(label);
  const logs = captureLogs();
  const config = loadConfig({
    MYOSICAM_DATA_DIR: dir.path,
    ADMIN_DATABASE_URL: database.url,
    ADMIN_PORT: "0",
    PANEL_PORT: "0",
    ADMIN_ENCRYPTION_KEY: oldKey,
    ...env,
  });
  const host = await startHost(config, selectServices(["admin"]), logs.log);
  const db = createDatabase(database.url, logs.log);
  const url = host.listeners.find((l) => l.name === "admin")!.url;
  const ca = await readFile(host.tls.certFile, "utf8");
  let stopped = false;
  return {
    host,
    url,
    ca,
    certFile: host.tls.certFile,
    config,
    db,
    callers: adminCallers(db, config),
    book: createLicenseBook(db),
    logs,
    licenseClient: (callerId, secret, httpVersion = "2") =>
      createClient(LicenseService, createSignedTransport({ baseUrl: url, credentials: { callerId, secret }, ca, httpVersion })),
    async stop() {
      if (stopped) return;
      stopped = true;
      await host.stop();
      await db.destroy();
      await database.drop();
      await dir.remove();
    },
  };
}
