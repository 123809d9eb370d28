import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext, Interceptor, Transport } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { Config } from "./config.js";
import type { DatabaseOutage } from "./database-outage.js";
import type { Knex, Migration } from "./db.js";
import type { HmacVerifierDeps } from "./hmac/verify.js";
import type { JobDefinition } from "./jobs/runner.js";
import type { Usage } from "./licensing/standing.js";
import type { BusySpell } from "./admission.js";
import type { HttpRoute } from "./server.js";

/** The two databases; a service's tables live in exactly one. */
export type DatabaseName = "panel" | "admin";

/** The two network listeners. */
export type ListenerName = "panel" | "admin";

/** How a service authenticates signed calls. */
export interface SignedCalls {
  /** The proto services that require a signature. */
  services: readonly DescService[];
  /** Finds callers and records nonces (refusals go to `hmac_refusals` of the service's database). */
  verifier: Omit<HmacVerifierDeps, "nowSeconds" | "skewSeconds">;
  /** Which requests must be signed (default all); the others are left to the module's `gate`. */
  applies?: (header: Headers) => boolean;
}

/** What a service's routes are built from. */
export interface ServiceDeps {
  config: Config;
  /** The pool of the service's own database. */
  db: Knex;
  /** That database's URL, for a dedicated connection (e.g. LISTEN). */
  dbUrl: string;
  /** A small pool on that database that plans each prepared statement once (OpenDatabases.genericPlans), opened on first use. */
  genericPlanDb(): Knex;
  /** The service's logger (`svc` bound). */
  log: Logger;
  /**
   * Where admin's LicenseService is reached: ADMIN_URL, else admin's listener in this process once
   * it listens, else ADMIN_HOST:ADMIN_PORT on this host.
   */
  adminUrl(): string;
  /** Where agents reach the panel: PANEL_PUBLIC_URL, else the panel's listener in this process, else PANEL_HOST:PANEL_PORT. */
  panelUrl(): string;
  /** This service's own listener in this process, once it listens (undefined before, and in-process). */
  listenerUrl(): string | undefined;
  /** This process's TLS certificate (PEM): a trust anchor for calls to services on this host. */
  ownCertificate: string;
  /** A transport reaching another service, in process when it is hosted here. */
  transportFor(service: DescService): Transport;
  /** Registers work to finish at shutdown, after the listeners closed and before the pools do. */
  onStop(fn: () => Promise<void>): void;
  /**
   * Servers and OScam instances in use, summed over every service of the panel's database; read
   * through `db` when given (a transaction that must see its own changes and hold no second connection).
   */
  currentUsage(db?: Knex): Promise<Usage>;
  /** Logs a database outage once (and its end), instead of once per refused call or failed write. */
  databaseOutage: DatabaseOutage;
  /** Queues a job of a queue defined in this service's database; answers its id. */
  enqueueJob(queue: string, data?: Record<string, unknown>): Promise<string>;
}

/** What a start tells the person who started it, once (the banner, `--json`). */
export interface StartReport {
  /** A first start created the owner account: its e-mail and generated password. */
  firstLogin?: { email: string; password: string };
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
  /**
   * Those of them that machines call on a schedule (agents' heartbeats): a successful call is
   * logged at debug, not info. Services on the in-process listener count as such too.
   */
  readonly routine?: readonly DescService[];
  readonly migrations: readonly Migration[];
  /** Services that must run in the same process (reached through in-memory transports). */
  readonly requires?: readonly string[];
  /** Background jobs it owns; they run on a queue in its database. */
  jobs?(deps: ServiceDeps): JobDefinition[];
  routes(deps: ServiceDeps): (router: ConnectRouter) => void;
  /** Server-streaming methods every agent holds open: served on a lean path (services/lib/held-stream.ts). */
  readonly heldStreams?: readonly DescMethod[];
  /**
   * Methods whose calls wait in a bounded queue of the service's own, which refuses past its
   * bound (a `gate` or the handler): admission control (services/lib/admission.ts) leaves them to
   * it. Counted with the rest, their long waits by design (a first sync queued behind 64 others)
   * would read as the whole listener's backlog and turn away heartbeats that would be answered at once.
   */
  readonly ownQueues?: readonly DescMethod[];
  /**
   * Told of the spells in which its listener refused calls for load (admission control): when one
   * starts, every 5 s while it goes on, and when it is over. Whoever judges callers by their
   * silence needs them: a caller turned away was not silent.
   */
  onRefusalSpell?(deps: ServiceDeps): (spell: BusySpell) => void;
  /**
   * Which master keys this service is handed in its config: "panel" (PANEL_ENCRYPTION_KEY pair,
   * only the crypto service; every other panel service asks CryptoService) or "admin"
   * (ADMIN_ENCRYPTION_KEY pair, only the admin service). Every other service sees neither.
   */
  readonly encryptionKeys?: DatabaseName;
  /**
   * Services of this module whose every call must be HMAC-signed (DESIGN.md §3.1), and how their
   * callers are found. The host puts the checks before any handler and before validation.
   */
  signedCalls?(deps: ServiceDeps): SignedCalls;
  /**
   * A check that runs for every call on this service's listener before the body is read and before
   * any signature is checked (e.g. an operator session, a backlog); it ignores calls of other
   * services and throws a ConnectError to refuse.
   */
  gate?(deps: ServiceDeps): (ctx: HandlerContext) => Promise<void>;
  /** Runs after migrations, before listening; throws (ConfigError for settings) to refuse start. */
  checkStartup?(deps: ServiceDeps): Promise<void>;
  /**
   * Runs once every listener is up (e.g. queue a first check that calls another listener); may
   * answer what the start must tell whoever started it, once (see StartReport).
   */
  afterStart?(deps: ServiceDeps): Promise<StartReport | undefined>;
  /** Details this service adds to `/readyz` (never makes the listener unready). */
  readinessDetails?(deps: ServiceDeps): Promise<Record<string, unknown>>;
  /**
   * Interceptors of this service's listener, run after authentication and before request
   * validation (so they see, e.g., a malformed request being refused); they must pass through
   * calls of other services.
   */
  interceptors?(deps: ServiceDeps): Interceptor[];
  /** Plain HTTP endpoints on this service's listener (e.g. downloads). */
  httpRoutes?(deps: ServiceDeps): HttpRoute[];
  /** What this service's tables count toward the license quotas (servers, OScam instances). */
  usage?(db: Knex): Promise<Partial<Usage>>;
}
