import { access, constants, mkdir, stat } from "node:fs/promises";
import type { DescService } from "@bufbuild/protobuf";
import { createRouterTransport, type ConnectRouter, type HandlerContext, type Interceptor, type Transport } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { connectionCapacity, openFileLimit } from "./lib/file-limit.js";
import { createUnstorableValueInterceptor } from "./lib/unstorable-values.js";
import type { BusySpell } from "./lib/admission.js";
import { createDatabaseOutage } from "./lib/database-outage.js";
import type { Logger } from "pino";
import { ConfigError, type Config } from "./lib/config.js";
import { checkDatabase, type Knex, type Migration } from "./lib/db.js";
import type { Usage } from "./lib/licensing/standing.js";
import { migrateDatabase, openDatabases, type OpenDatabases } from "./lib/databases.js";
import { nonceMigrations, recordRefusal } from "./lib/hmac/nonce-store.js";
import { createHmacAuth } from "./lib/hmac/server-auth.js";
import { coreJobs } from "./lib/jobs/core-jobs.js";
import { startJobRunner, type JobRunner } from "./lib/jobs/runner.js";
import { jobMigrations } from "./lib/jobs/store.js";
import { getInstallation, installationMigrations } from "./lib/installation.js";
import { Registry } from "prom-client";
import { callMetrics, databaseMetrics, processMetrics } from "./lib/metrics.js";
import { createRequestContextInterceptor } from "./lib/request-context.js";
import { createServer, type Readiness, type RunningServer } from "./lib/server.js";
import type { DatabaseName, ListenerName, ServiceDeps, ServiceModule, StartReport } from "./lib/service-module.js";
import { loadTlsIdentity, type TlsIdentity } from "./lib/tls.js";
import { serviceRegistry } from "./index.js";

/** A process hosting some services: what `up` and `serve` start. */
export interface Host {
  /** One entry per listener that has services, e.g. panel → https://127.0.0.1:8443. */
  readonly listeners: ReadonlyArray<{ name: ListenerName; url: string; services: string[] }>;
  /** Services reachable only through in-memory transports in this process. */
  readonly inProcessServices: readonly string[];
  readonly tls: TlsIdentity;
  /** Installation id per open database. */
  readonly installations: Partial<Record<DatabaseName, string>>;
  /** Whether the embedded PostgreSQL runs in this process, and on which port. */
  readonly embeddedPostgresPort?: number;
  /** What the services' first start has to tell, once (e.g. the owner's first login). */
  readonly report: StartReport;
  /** A transport reaching any hosted service in memory (same interceptors as the network). */
  transportFor(service: DescService): Transport;
  /** Queues a job on a database's queue; answers its id. */
  enqueueJob(database: DatabaseName, queue: string, data?: Record<string, unknown>): Promise<string>;
  /** Ordered, idempotent, bounded stop: drain → close servers → close pools → stop PostgreSQL. */
  stop(): Promise<void>;
}

/** Below this many possible connections the start warns: a fleet of a few thousand agents would not fit. */
const minimumComfortableConnections = 4096;

/** Every migration that belongs in `database`, whichever services this process hosts. */
export function migrationsFor(database: DatabaseName): Migration[] {
  return [
    ...installationMigrations,
    ...nonceMigrations,
    ...jobMigrations,
    ...serviceRegistry.filter((s) => s.database === database).flatMap((s) => s.migrations),
  ];
}

/** Type names of the services whose successful calls are logged at debug (see ServiceModule.routine). */
function routineServices(services: readonly ServiceModule[]): Set<string> {
  return new Set(services.flatMap((s) => (s.listener === "in-process" ? s.descriptors : (s.routine ?? [])).map((d) => d.typeName)));
}

/** Databases the given services need, in a stable order. */
export function databasesFor(services: readonly ServiceModule[]): DatabaseName[] {
  return (["panel", "admin"] as const).filter((d) => services.some((s) => s.database === d));
}

/** Makes sure the data directory exists and is writable; a ConfigError otherwise. */
export async function prepareDataDir(dataDir: string): Promise<void> {
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    if (!(await stat(dataDir)).isDirectory()) throw Object.assign(new Error(), { code: "ENOTDIR" });
    await access(dataDir, constants.R_OK | constants.W_OK | constants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === "ENOTDIR" || code === "EEXIST"
        ? "is not a directory"
        : code === "EACCES" || code === "EPERM"
          ? "is not readable and writable by this user"
          : `cannot be created (${code ?? "unknown error"})`;
    throw new ConfigError("MYOSICAM_DATA_DIR", `${dataDir} ${why}`);
  }
}

/**
 * Starts the given services: data directory, TLS identity, databases (embedded or configured),
 * migrations, then one HTTPS server per listener. On any failure everything started is stopped.
 */
export async function startHost(config: Config, services: readonly ServiceModule[], log: Logger): Promise<Host> {
  await prepareDataDir(config.dataDir);
  const tls = await loadTlsIdentity({
    dataDir: config.dataDir,
    certFile: config.tls.certFile,
    keyFile: config.tls.keyFile,
    names: [config.panel.host, config.admin.host],
  });
  const databases = await openDatabases(config, databasesFor(services), log, { serves: true });
  const servers: RunningServer[] = [];
  const listeners: Array<{ name: ListenerName; url: string; services: string[] }> = [];
  const runners = new Map<DatabaseName, JobRunner>();
  const stopRunners = (timeoutMs: number) => Promise.all([...runners.values()].map((r) => r.stop(timeoutMs)));
  try {
    const installations: Partial<Record<DatabaseName, string>> = {};
    for (const name of databasesFor(services)) {
      await migrateDatabase(databases.get(name), name, migrationsFor(name), log);
      installations[name] = (await getInstallation(databases.get(name))).id;
    }

    const serviceNames = new Map(services.flatMap((s) => s.descriptors.map((d) => [d.typeName, s.name] as const)));
    const databaseOutage = createDatabaseOutage({ log, databases: databasesFor(services).map((name) => ({ name, db: databases.get(name) })) });
    const interceptors: Interceptor[] = [
      createRequestContextInterceptor(log, serviceNames, callMetrics, databaseOutage, routineServices(services)),
      createValidateInterceptor(),
      createUnstorableValueInterceptor(),
    ];
    const fromDatabases = databaseMetrics(
      databasesFor(services).map((name) => ({ name, db: databases.get(name), hasCommands: name === "panel" && services.some((s) => s.name === "agents") })),
    );
    const metrics = {
      token: config.metricsToken,
      scrape: async () => {
        const registry = Registry.merge([processMetrics, fromDatabases]);
        return { contentType: registry.contentType, text: await registry.metrics() };
      },
    };
    const hosted = new Set(services.flatMap((s) => s.descriptors.map((d) => d.typeName)));
    let inProcess: Transport | undefined;
    const transportFor = (service: DescService): Transport => {
      if (!hosted.has(service.typeName)) {
        throw new Error(`${service.typeName} is not hosted in this process; run it here or configure its URL`);
      }
      // Services may ask for a transport while their routes are being built: the router is made
      // on the first call, once every service is mounted.
      const real = () => (inProcess ??= createRouterTransport(allRoutes, { router: { interceptors } }));
      return { unary: (...args) => real().unary(...args), stream: (...args) => real().stream(...args) };
    };
    const {
      encryptionKeyHex: panelKey,
      previousEncryptionKeyHex: previousPanelKey,
      adminEncryptionKeyHex: adminKey,
      previousAdminEncryptionKeyHex: previousAdminKey,
      ...configWithoutKeys
    } = config;
    const configFor = (s: ServiceModule): Config =>
      s.encryptionKeys === "panel"
        ? { ...configWithoutKeys, encryptionKeyHex: panelKey, previousEncryptionKeyHex: previousPanelKey }
        : s.encryptionKeys === "admin"
          ? { ...configWithoutKeys, adminEncryptionKeyHex: adminKey, previousAdminEncryptionKeyHex: previousAdminKey }
          : configWithoutKeys;
    const enqueueIn = (database: DatabaseName) => (queue: string, data?: Record<string, unknown>) => {
      const runner = runners.get(database);
      if (!runner) throw new Error(`jobs are not running on the ${database} database in this process`);
      return runner.enqueue(queue, data);
    };
    const currentUsage = (db?: Knex) => usageOf(db ?? databases.get("panel"));
    const stopHooks: Array<() => Promise<void>> = [];
    const onStop = (fn: () => Promise<void>) => void stopHooks.push(fn);
    const adminUrl = () => config.adminUrl ?? listeners.find((l) => l.name === "admin")?.url ?? localUrl(config.admin);
    const panelUrl = () => config.panelPublicUrl ?? listeners.find((l) => l.name === "panel")?.url ?? localUrl(config.panel);
    const depsOf = (s: ServiceModule): ServiceDeps => ({
      currentUsage,
      onStop,
      adminUrl,
      panelUrl,
      listenerUrl: () => listeners.find((l) => l.name === s.listener)?.url,
      config: configFor(s),
      db: databases.get(s.database),
      dbUrl: databases.url(s.database),
      genericPlanDb: () => databases.genericPlans(s.database),
      log: log.child({ svc: s.name }),
      ownCertificate: tls.cert,
      transportFor,
      enqueueJob: enqueueIn(s.database),
      databaseOutage,
    });
    for (const s of services) await s.checkStartup?.(depsOf(s));
    const mounted = new Map(services.map((s) => [s, s.routes(depsOf(s))]));
    for (const name of databasesFor(services)) {
      const db = databases.get(name);
      const definitions = [...coreJobs(db, config.hmacSkewSeconds), ...services.filter((s) => s.database === name).flatMap((s) => s.jobs?.(depsOf(s)) ?? [])];
      runners.set(
        name,
        await startJobRunner({
          url: databases.url(name),
          db,
          definitions,
          log: log.child({ component: "jobs", database: name }),
          pollingIntervalSeconds: config.jobPollIntervalSeconds,
          databaseOutage,
        }),
      );
    }
    const routesOf = (subset: readonly ServiceModule[]) => (router: ConnectRouter) => {
      for (const s of subset) mounted.get(s)!(router);
    };
    const allRoutes = routesOf(services);

    // Every agent holds a connection, so the open-file limit is how many agents this process can hold.
    const fileLimit = openFileLimit();
    const connections = connectionCapacity(fileLimit);
    if (connections !== undefined) {
      const words = { openFileLimit: fileLimit!.soft, connections };
      if (connections < minimumComfortableConnections) {
        log.warn(
          words,
          "the open-file limit (RLIMIT_NOFILE) leaves room for few agent connections; raise it (systemd LimitNOFILE=65536, or ulimit -n) before the fleet grows",
        );
      } else log.info(words, "connections this process can hold, from its open-file limit");
    }

    for (const listener of ["panel", "admin"] as const) {
      const subset = services.filter((s) => s.listener === listener);
      if (subset.length === 0) continue;
      const auth = signedCallAuth(subset, depsOf, config.hmacSkewSeconds, log.child({ listener }));
      const { listen } = createServer({
        name: listener,
        tls,
        routes: routesOf(subset),
        heldStreams: subset.flatMap((s) => s.heldStreams ?? []),
        ownQueues: subset.flatMap((s) => s.ownQueues ?? []),
        onRefusalSpell: spellListeners(subset, depsOf),
        requestGate: auth.requestGate,
        httpRoutes: subset.flatMap((s) => s.httpRoutes?.(depsOf(s)) ?? []),
        metrics,
        // Request context first (request id, error translation), then the signature checks, then
        // validation: an unsigned request is refused before its input is even looked at.
        interceptors: [interceptors[0]!, ...auth.interceptors, ...subset.flatMap((s) => s.interceptors?.(depsOf(s)) ?? []), ...interceptors.slice(1)],
        // In-process services of this listener's database report here too (e.g. the license).
        readiness: () =>
          readiness(
            databases,
            databasesFor(subset),
            services.filter((s) => s.listener === listener || (s.listener === "in-process" && s.database === listener)),
            depsOf,
            log,
          ),
        log: log.child({ listener }),
        readMaxBytes: config.rpcReadMaxBytes,
        maxTimeoutMs: config.rpcMaxTimeoutSeconds * 1000,
        bodyReadTimeoutMs: config.rpcBodyReadTimeoutSeconds * 1000,
        maxPendingCalls: config.rpcMaxPendingCalls,
        maxConnections: connections,
        pingIntervalMs: config.http2PingIntervalSeconds * 1000,
        handshakeTimeoutMs: config.tlsHandshakeTimeoutSeconds * 1000,
      });
      const { host, port } = config[listener];
      const setting = listener === "panel" ? "PANEL_PORT" : "ADMIN_PORT";
      const server = await listen(port, host).catch((err: NodeJS.ErrnoException) => {
        if (err.code === "EADDRINUSE") throw new ConfigError(setting, `port ${port} on ${host} is already in use`);
        if (err.code === "EADDRNOTAVAIL")
          throw new ConfigError(listener === "panel" ? "PANEL_HOST" : "ADMIN_HOST", `${host} is not an address of this machine`);
        if (err.code === "EACCES") throw new ConfigError(setting, `port ${port} needs privileges this user lacks`);
        throw err;
      });
      servers.push(server);
      listeners.push({ name: listener, url: server.url, services: subset.map((s) => s.name) });
      log.info({ listener, url: server.url, services: subset.map((s) => s.name) }, "listening");
    }

    const report: StartReport = {};
    for (const s of services) Object.assign(report, await s.afterStart?.(depsOf(s)));

    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        const deadlineMs = config.shutdownTimeoutSeconds * 1000;
        for (const server of servers) server.markDraining();
        const results = await Promise.all(servers.map((s) => s.close(deadlineMs)));
        if (results.some((r) => r.forced)) log.warn({ deadlineMs }, "connections still open at the shutdown deadline were cut");
        for (const hook of stopHooks) await hook().catch((err: unknown) => log.error({ err }, "a service failed to finish at shutdown"));
        await stopRunners(deadlineMs);
        databaseOutage.stop();
        await databases.close();
        log.info("stopped");
      })());
    const enqueueJob = (database: DatabaseName, queue: string, data?: Record<string, unknown>) => enqueueIn(database)(queue, data);
    const inProcessServices = services.filter((s) => s.listener === "in-process").map((s) => s.name);
    return { listeners, inProcessServices, tls, installations, embeddedPostgresPort: databases.embedded?.port, report, transportFor, enqueueJob, stop };
  } catch (err) {
    await Promise.all(servers.map((s) => s.close(1000)));
    await stopRunners(1000);
    await databases.close();
    throw err;
  }
}

/** Tells every service of a listener that listens for them of that listener's spells of refusing calls. */
function spellListeners(services: readonly ServiceModule[], depsOf: (s: ServiceModule) => ServiceDeps): ((spell: BusySpell) => void) | undefined {
  const listeners = services.flatMap((s) => s.onRefusalSpell?.(depsOf(s)) ?? []);
  if (listeners.length === 0) return undefined;
  return (spell) => {
    for (const listener of listeners) listener(spell);
  };
}

/**
 * The checks before handlers for the services of one listener: each service's own `gate` (an
 * operator session; a sync refused for the backlog, which costs nothing more that way), then the
 * HMAC checks of those that declare `signedCalls` (a gate before the body is read, and
 * interceptors that verify signatures and nonces).
 */
function signedCallAuth(services: readonly ServiceModule[], depsOf: (s: ServiceModule) => ServiceDeps, skewSeconds: number, log: Logger) {
  const auths = services.flatMap((s) => {
    if (!s.signedCalls) return [];
    const deps = depsOf(s);
    const signed = s.signedCalls(deps);
    return [
      createHmacAuth({
        verifier: { ...signed.verifier, nowSeconds: () => Date.now() / 1000, skewSeconds },
        protectedServices: new Set(signed.services.map((d) => d.typeName)),
        applies: signed.applies,
        log: deps.log,
        databaseOutage: deps.databaseOutage,
        onRefusal: (event) =>
          recordRefusal(deps.db, event).catch((err: unknown) => {
            if (!deps.databaseOutage.notice(err)) log.error({ err, requestId: event.requestId }, "could not record a refused signed request");
          }),
      }),
    ];
  });
  const gates = [...services.flatMap((s) => (s.gate ? [s.gate(depsOf(s))] : [])), ...auths.map((a) => a.requestGate)];
  return {
    requestGate:
      gates.length === 0
        ? undefined
        : async (ctx: HandlerContext) => {
            for (const gate of gates) await gate(ctx);
          },
    interceptors: auths.map((a) => a.interceptor),
  };
}

async function readiness(
  databases: OpenDatabases,
  names: readonly DatabaseName[],
  services: readonly ServiceModule[],
  depsOf: (s: ServiceModule) => ServiceDeps,
  log: Logger,
): Promise<Readiness> {
  const checks: Record<string, unknown> = {};
  let ready = true;
  const embedded = databases.embedded?.status();
  if (embedded && !databases.embedded!.shared) {
    checks.embeddedPostgres = embedded;
    ready &&= embedded.state === "running";
  }
  for (const name of names) {
    const status = await checkDatabase(databases.get(name), migrationsFor(name));
    checks[`${name}Database`] = status;
    ready &&= status.reachable && status.pendingMigrations === 0;
  }
  for (const s of services) {
    if (!s.readinessDetails || !ready) continue;
    try {
      Object.assign(checks, await s.readinessDetails(depsOf(s)));
    } catch (err) {
      log.warn({ err, svc: s.name }, "readiness details failed");
    }
  }
  return { ready, checks };
}

/** A listener's URL on this host (a wildcard bind is reached over loopback). */
function localUrl({ host, port }: { host: string; port: number }): string {
  const name = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "[::1]" : host.includes(":") ? `[${host}]` : host;
  return `https://${name}:${port}`;
}

/** Servers and OScam instances in use, as counted by every panel service that has such records. */
async function usageOf(db: Knex): Promise<Usage> {
  const usage = { servers: 0, instances: 0 };
  for (const s of serviceRegistry.filter((m) => m.database === "panel" && m.usage)) {
    const part = await s.usage!(db);
    usage.servers += part.servers ?? 0;
    usage.instances += part.instances ?? 0;
  }
  return usage;
}
