import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, Transport } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { Config } from "./config.js";
import type { Knex, Migration } from "./db.js";
import type { JobDefinition } from "./jobs/runner.js";

/** The two databases; a service's tables live in exactly one. */
export type DatabaseName = "panel" | "admin";

/** The two network listeners. */
export type ListenerName = "panel" | "admin";

/** What a service's routes are built from. */
export interface ServiceDeps {
  config: Config;
  /** The pool of the service's own database. */
  db: Knex;
  /** The service's logger (`svc` bound). */
  log: Logger;
  /** A transport reaching another service, in process when it is hosted here. */
  transportFor(service: DescService): Transport;
  /** Queues a job of a queue defined in this service's database; answers its id. */
  enqueueJob(queue: string, data?: Record<string, unknown>): Promise<string>;
}

/** How a service folder presents itself to the registry (`services/index.ts`). */
export interface ServiceModule {
  /** Folder name, and the `svc` field of its log lines. */
  readonly name: string;
  /** Where it is served; "in-process" services are reachable only through in-memory transports. */
  readonly listener: ListenerName | "in-process";
  readonly database: DatabaseName;
  /** The proto services it mounts. */
  readonly descriptors: readonly DescService[];
  readonly migrations: readonly Migration[];
  /** Background jobs it owns; they run on a queue in its database. */
  jobs?(deps: ServiceDeps): JobDefinition[];
  routes(deps: ServiceDeps): (router: ConnectRouter) => void;
  /**
   * Whether this service is handed PANEL_ENCRYPTION_KEY(_PREVIOUS) in its config. Only the crypto
   * service is: every other service gets a config without them and asks CryptoService.
   */
  readonly holdsEncryptionKeys?: boolean;
  /** Runs after migrations, before listening; throws (ConfigError for settings) to refuse start. */
  checkStartup?(deps: ServiceDeps): Promise<void>;
}
