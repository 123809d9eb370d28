import { readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { parseEnv } from "node:util";
import { weakKeyReason } from "./key-strength.js";

/** Log levels pino accepts, lowest to highest. */
export const logLevels = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof logLevels)[number];

/** A listener: where one group of services is served. */
export interface ListenerConfig {
  /** Address to bind. */
  host: string;
  /** TCP port; 0 picks a free one (tests). */
  port: number;
}

/** Everything a MyOsicam process is configured with, read once at start by `loadConfig`. */
export interface Config {
  /** Absolute path of the data directory: embedded PostgreSQL, generated certificate. */
  dataDir: string;
  /** Where the panel's services listen. */
  panel: ListenerConfig;
  /** Where admin's services listen. */
  admin: ListenerConfig;
  /** PEM certificate and key files; both unset means a self-signed certificate in `dataDir`. */
  tls: { certFile?: string; keyFile?: string };
  /** The panel's database; unset means the embedded PostgreSQL. */
  databaseUrl?: string;
  /** Admin's database; unset means the embedded PostgreSQL. */
  adminDatabaseUrl?: string;
  /** Port of the embedded PostgreSQL (loopback only); 0 picks a free one. */
  embeddedPostgresPort: number;
  /** Connections each database's pool in this process may open (the job queue keeps its own few). */
  databasePoolSize: number;
  /** 64 lowercase hex characters (32 bytes): the key that seals secrets at rest. */
  encryptionKeyHex?: string;
  /** The key being rotated away from; values sealed with it still open until rotation ends. */
  previousEncryptionKeyHex?: string;
  /** Admin's own key for its secrets at rest (caller secrets); admin never holds the panel's key. */
  adminEncryptionKeyHex?: string;
  /** Admin's previous key during a rotation. */
  previousAdminEncryptionKeyHex?: string;
  /** How the panel signs its calls to admin: its caller id and secret (DESIGN.md §3.1). */
  panelCaller: { id: string; secret?: string };
  /** The panel's license key, validated with admin at start and every 6 hours. */
  licenseKey?: string;
  /** Bearer token of `GET /metrics` on each listener; unset: no metrics are served. */
  metricsToken?: string;
  /**
   * Where the panel reaches admin's LicenseService (ADMIN_URL, https only); unset means admin's
   * listener on this host (see ServiceDeps.adminUrl).
   */
  adminUrl?: string;
  /** Extra trust anchors (PEM file) for admin's certificate, besides the system's and our own. */
  adminTlsCaFile?: string;
  /**
   * Set only by `up` (panel and admin in one process): admin makes sure the panel's caller, a
   * public_pricing caller and a development license for PANEL_LICENSE_KEY exist.
   */
  developmentTrust?: boolean;
  logLevel: LogLevel;
  /** How long a graceful stop may take before it is forced. */
  shutdownTimeoutSeconds: number;
  /** Interval of the HTTP/2 PING each server sends on every session; a missed answer closes it. */
  http2PingIntervalSeconds: number;
  /** How long a connection may take to finish its TLS handshake (one that never starts is closed). */
  tlsHandshakeTimeoutSeconds: number;
  /** Largest request message a server reads. */
  rpcReadMaxBytes: number;
  /** Largest deadline a client may ask for. */
  rpcMaxTimeoutSeconds: number;
  /** How long a request body may take to arrive; a slower one is answered 408 and closed. */
  rpcBodyReadTimeoutSeconds: number;
  /**
   * Calls a listener takes on before it answers new ones `Unavailable` with a retry hint
   * (admission control: under a thundering herd, refuse early rather than time out; a backlog of
   * 256 calls waiting over 5 s is refused too, whatever this says).
   */
  rpcMaxPendingCalls: number;
  /** Largest accepted difference between a signed request's timestamp and this clock. */
  hmacSkewSeconds: number;
  /** How often idle job workers look for work (besides being woken by LISTEN/NOTIFY). */
  jobPollIntervalSeconds: number;
  /** Agents: heartbeat interval told to agents; liveness counts missed intervals. */
  agentHeartbeatIntervalSeconds: number;
  /** Agents: missed heartbeats after which a server is unreachable. */
  agentMissedHeartbeats: number;
  /** Agents: commands delivered and not yet answered, per panel process (delivery-window.ts). */
  agentCommandsInFlight: number;
  /** Agents: new agents stay pending (heartbeat only) until an operator approves them. */
  requireAgentApproval: boolean;
  /** Failed registrations per source address and minute before further attempts are refused. */
  registrationFailuresPerMinute: number;
  /** Where agents reach the panel: printed in bootstrap commands. */
  panelPublicUrl?: string;
  /** Directory of agent artifacts served by the gated download (`myosicam-agent-<os>-<arch>`). */
  agentArtifactDir: string;
  /** The release public key (PEM file) uploads are checked against; unset refuses uploads. */
  agentReleasePublicKeyFile?: string;
  /** The e-mail of the owner account a first start creates (when there is no operator yet). */
  ownerEmail: string;
  /** Operator sessions end after this long unused (DESIGN.md §3.7: 12 h). */
  sessionIdleSeconds: number;
  /** Operator sessions end after this long whatever their use (7 days). */
  sessionLifetimeSeconds: number;
}

/** A configuration problem, reported as one line naming the setting. */
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    /** The environment variable at fault. */
    readonly setting: string,
    problem: string,
  ) {
    super(`${setting}: ${problem}`);
  }
}

/** The environment, as plain strings. */
export type Env = Readonly<Record<string, string | undefined>>;

/** Every default in one place; names are the environment variables. */
export const configDefaults = {
  MYOSICAM_DATA_DIR: "./data",
  PANEL_HOST: "127.0.0.1",
  PANEL_PORT: "8443",
  ADMIN_HOST: "127.0.0.1",
  ADMIN_PORT: "8444",
  EMBEDDED_POSTGRES_PORT: "15432",
  DATABASE_POOL_SIZE: "10",
  LOG_LEVEL: "info",
  SHUTDOWN_TIMEOUT_SECONDS: "10",
  HTTP2_PING_INTERVAL_SECONDS: "30",
  TLS_HANDSHAKE_TIMEOUT_SECONDS: "60",
  RPC_READ_MAX_BYTES: String(8 * 1024 * 1024),
  RPC_MAX_TIMEOUT_SECONDS: "300",
  RPC_BODY_READ_TIMEOUT_SECONDS: "30",
  RPC_MAX_PENDING_CALLS: "10000",
  HMAC_SKEW_SECONDS: "300",
  JOB_POLL_INTERVAL_SECONDS: "2",
  PANEL_CALLER_ID: "panel",
  AGENT_HEARTBEAT_INTERVAL_SECONDS: "60",
  AGENT_MISSED_HEARTBEATS: "3",
  AGENT_COMMANDS_IN_FLIGHT: "1000",
  REQUIRE_AGENT_APPROVAL: "false",
  REGISTRATION_FAILURES_PER_MINUTE: "10",
  AGENT_ARTIFACT_DIR: "./dist/agent",
  PANEL_OWNER_EMAIL: "owner@localhost",
  SESSION_IDLE_TIMEOUT_SECONDS: String(12 * 3600),
  SESSION_LIFETIME_SECONDS: String(7 * 86400),
} as const;

/** Default location of the optional configuration file, relative to the working directory. */
export const defaultConfigFile = "config/.env";

/**
 * Merges `config/.env` (or `MYOSICAM_CONFIG_FILE`) under the process environment: the
 * environment wins. A missing file is fine; an unreadable one is a ConfigError.
 */
export function readEnv(processEnv: Env, cwd = process.cwd()): Env {
  const explicit = processEnv.MYOSICAM_CONFIG_FILE;
  const file = resolve(cwd, explicit ?? defaultConfigFile);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && explicit === undefined) return processEnv;
    throw new ConfigError("MYOSICAM_CONFIG_FILE", `cannot read ${file} (${code ?? String(err)})`);
  }
  return { ...parseEnv(text), ...processEnv };
}

/**
 * Reads and validates the configuration from `env`. Pure: touches no file. Throws a ConfigError
 * naming the first bad setting.
 */
export function loadConfig(env: Env, cwd = process.cwd()): Config {
  const get = (name: keyof typeof configDefaults): string => {
    const value = env[name]?.trim();
    return value === undefined || value === "" ? configDefaults[name] : value;
  };
  const optional = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === undefined || value === "" ? undefined : value;
  };

  const certFile = optional("PANEL_TLS_CERT");
  const keyFile = optional("PANEL_TLS_KEY");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    const missing = certFile === undefined ? "PANEL_TLS_CERT" : "PANEL_TLS_KEY";
    throw new ConfigError(missing, "must be set together with " + (certFile === undefined ? "PANEL_TLS_KEY" : "PANEL_TLS_CERT"));
  }

  const [encryptionKeyHex, previousEncryptionKeyHex] = encryptionKeyPair(optional, "PANEL_ENCRYPTION_KEY");
  const [adminEncryptionKeyHex, previousAdminEncryptionKeyHex] = encryptionKeyPair(optional, "ADMIN_ENCRYPTION_KEY");

  const logLevel = get("LOG_LEVEL").toLowerCase();
  if (!(logLevels as readonly string[]).includes(logLevel)) {
    throw new ConfigError("LOG_LEVEL", `must be one of ${logLevels.join(", ")}, got "${logLevel}"`);
  }

  const config: Config = {
    dataDir: absolute(get("MYOSICAM_DATA_DIR"), cwd),
    panel: { host: host(get, "PANEL_HOST"), port: port(get, "PANEL_PORT") },
    admin: { host: host(get, "ADMIN_HOST"), port: port(get, "ADMIN_PORT") },
    tls: {
      ...(certFile !== undefined && { certFile: absolute(certFile, cwd) }),
      ...(keyFile !== undefined && { keyFile: absolute(keyFile, cwd) }),
    },
    databaseUrl: databaseUrl(optional, "DATABASE_URL"),
    adminDatabaseUrl: databaseUrl(optional, "ADMIN_DATABASE_URL"),
    embeddedPostgresPort: port(get, "EMBEDDED_POSTGRES_PORT"),
    databasePoolSize: integer(get, "DATABASE_POOL_SIZE", 2, 1000),
    encryptionKeyHex,
    previousEncryptionKeyHex,
    adminEncryptionKeyHex,
    previousAdminEncryptionKeyHex,
    panelCaller: { id: callerId(get), secret: callerSecret(optional) },
    licenseKey: licenseKey(optional),
    metricsToken: metricsToken(optional),
    adminUrl: httpsOrigin(optional, "ADMIN_URL", "https://admin.example.com:8444"),
    adminTlsCaFile: optional("ADMIN_TLS_CA") === undefined ? undefined : absolute(optional("ADMIN_TLS_CA")!, cwd),
    logLevel: logLevel as LogLevel,
    shutdownTimeoutSeconds: integer(get, "SHUTDOWN_TIMEOUT_SECONDS", 1, 3600),
    http2PingIntervalSeconds: integer(get, "HTTP2_PING_INTERVAL_SECONDS", 1, 3600),
    tlsHandshakeTimeoutSeconds: integer(get, "TLS_HANDSHAKE_TIMEOUT_SECONDS", 1, 600),
    rpcReadMaxBytes: integer(get, "RPC_READ_MAX_BYTES", 1024, 1024 * 1024 * 1024),
    rpcMaxTimeoutSeconds: integer(get, "RPC_MAX_TIMEOUT_SECONDS", 1, 86400),
    rpcBodyReadTimeoutSeconds: integer(get, "RPC_BODY_READ_TIMEOUT_SECONDS", 1, 3600),
    rpcMaxPendingCalls: integer(get, "RPC_MAX_PENDING_CALLS", 10, 1_000_000),
    hmacSkewSeconds: integer(get, "HMAC_SKEW_SECONDS", 1, 3600),
    jobPollIntervalSeconds: decimal(get, "JOB_POLL_INTERVAL_SECONDS", 0.5, 600),
    agentHeartbeatIntervalSeconds: integer(get, "AGENT_HEARTBEAT_INTERVAL_SECONDS", 1, 3600),
    agentMissedHeartbeats: integer(get, "AGENT_MISSED_HEARTBEATS", 1, 100),
    agentCommandsInFlight: integer(get, "AGENT_COMMANDS_IN_FLIGHT", 1, 100_000),
    requireAgentApproval: boolean(get, "REQUIRE_AGENT_APPROVAL"),
    registrationFailuresPerMinute: integer(get, "REGISTRATION_FAILURES_PER_MINUTE", 1, 100_000),
    panelPublicUrl: httpsOrigin(optional, "PANEL_PUBLIC_URL", "https://panel.example.com:8443"),
    agentArtifactDir: absolute(get("AGENT_ARTIFACT_DIR"), cwd),
    agentReleasePublicKeyFile: optional("AGENT_RELEASE_PUBLIC_KEY_FILE") === undefined ? undefined : absolute(optional("AGENT_RELEASE_PUBLIC_KEY_FILE")!, cwd),
    ownerEmail: email(get, "PANEL_OWNER_EMAIL"),
    sessionIdleSeconds: integer(get, "SESSION_IDLE_TIMEOUT_SECONDS", 60, 30 * 86400),
    sessionLifetimeSeconds: integer(get, "SESSION_LIFETIME_SECONDS", 60, 90 * 86400),
  };
  const samePort = config.panel.port !== 0 && config.panel.port === config.admin.port;
  if (samePort && config.panel.host === config.admin.host) {
    throw new ConfigError("ADMIN_PORT", `must differ from PANEL_PORT (both are ${config.panel.port})`);
  }
  return config;
}

type Getter = (name: keyof typeof configDefaults) => string;

function absolute(path: string, cwd: string): string {
  return isAbsolute(path) ? path : resolve(cwd, path);
}

function integer(get: Getter, name: keyof typeof configDefaults, min: number, max: number): number {
  const raw = get(name);
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function email(get: Getter, name: keyof typeof configDefaults): string {
  const raw = get(name).toLowerCase();
  if (!/^[^\s@]{1,64}@[^\s@]{1,255}$/.test(raw)) throw new ConfigError(name, `must be an e-mail address, got "${raw}"`);
  return raw;
}

function boolean(get: Getter, name: keyof typeof configDefaults): boolean {
  const raw = get(name).toLowerCase();
  if (["true", "1", "yes"].includes(raw)) return true;
  if (["false", "0", "no"].includes(raw)) return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

function decimal(get: Getter, name: keyof typeof configDefaults, min: number, max: number): number {
  const raw = get(name);
  if (!/^\d+(\.\d+)?$/.test(raw)) throw new ConfigError(name, `must be a number of seconds, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function port(get: Getter, name: keyof typeof configDefaults): number {
  const raw = get(name);
  if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) {
    throw new ConfigError(name, `must be a TCP port number from 0 to 65535, got "${raw}"`);
  }
  return Number(raw);
}

function host(get: Getter, name: keyof typeof configDefaults): string {
  const raw = get(name);
  if (!/^[A-Za-z0-9.:_-]{1,253}$/.test(raw)) {
    throw new ConfigError(name, `must be an IP address or host name to bind, got "${raw}"`);
  }
  return raw;
}

/** `<name>` and `<name>_PREVIOUS`: the active key and, during a rotation, the old one. */
function encryptionKeyPair(optional: (name: string) => string | undefined, name: string): [string | undefined, string | undefined] {
  const active = encryptionKey(optional, name);
  const previous = encryptionKey(optional, `${name}_PREVIOUS`);
  if (previous !== undefined && active === undefined) {
    throw new ConfigError(name, `must be set when ${name}_PREVIOUS is (the new key to rotate to)`);
  }
  if (previous !== undefined && previous === active) {
    throw new ConfigError(`${name}_PREVIOUS`, `is the same key as ${name}; set it to the old key, or remove it`);
  }
  return [active, previous];
}

function encryptionKey(optional: (name: string) => string | undefined, name: string): string | undefined {
  const raw = optional(name);
  if (raw === undefined) return undefined;
  if (!/^[0-9a-fA-F]{64}$/.test(raw)) {
    throw new ConfigError(
      name,
      `must be 64 hex characters (32 bytes), got ${raw.length} characters; create one with \`npx myosicam keys generate\` or \`openssl rand -hex 32\``,
    );
  }
  const weak = weakKeyReason(Buffer.from(raw, "hex"));
  if (weak) throw new ConfigError(name, `is too weak to protect secrets (${weak}); create one with \`npx myosicam keys generate\``);
  return raw.toLowerCase();
}

function callerId(get: Getter): string {
  const raw = get("PANEL_CALLER_ID");
  if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(raw)) {
    throw new ConfigError("PANEL_CALLER_ID", `must be 1–128 letters, digits or _.:- (a caller id from \`npx myosicam caller list\`), got "${raw}"`);
  }
  return raw;
}

function callerSecret(optional: (name: string) => string | undefined): string | undefined {
  const raw = optional("PANEL_CALLER_SECRET");
  if (raw === undefined) return undefined;
  if (!/^[0-9a-f]{64}$/.test(raw)) {
    throw new ConfigError(
      "PANEL_CALLER_SECRET",
      `must be the 64 lowercase hex characters printed by \`npx myosicam caller create\` or \`caller rotate\`, got ${raw.length} characters`,
    );
  }
  return raw;
}

function metricsToken(optional: (name: string) => string | undefined): string | undefined {
  const raw = optional("METRICS_TOKEN");
  if (raw === undefined) return undefined;
  if (!/^[A-Za-z0-9_.~+/=-]{32,256}$/.test(raw)) {
    throw new ConfigError(
      "METRICS_TOKEN",
      `must be 32–256 characters of letters, digits and _.~+/=- (e.g. \`npx myosicam keys generate\`), got ${raw.length} characters`,
    );
  }
  return raw;
}

function licenseKey(optional: (name: string) => string | undefined): string | undefined {
  const raw = optional("PANEL_LICENSE_KEY");
  if (raw === undefined) return undefined;
  if (!/^[A-Za-z0-9_-]{16,128}$/.test(raw)) {
    throw new ConfigError("PANEL_LICENSE_KEY", "must be the license key as issued (16–128 letters, digits, _ or -), e.g. mlk_…");
  }
  return raw;
}

/** An https origin setting (scheme, host and port only) when set. */
function httpsOrigin(optional: (name: string) => string | undefined, name: string, example: string): string | undefined {
  const raw = optional(name);
  if (raw === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, `must be a URL like ${example}`);
  }
  if (url.protocol !== "https:") throw new ConfigError(name, `must start with https:// (got ${url.protocol}//)`);
  if (url.pathname !== "/" || url.search || url.hash) throw new ConfigError(name, `must be only scheme, host and port, e.g. ${example}`);
  return url.origin;
}

function databaseUrl(optional: (name: string) => string | undefined, name: string): string | undefined {
  const raw = optional(name);
  if (raw === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, "must be a URL like postgres://user:password@host:5432/database");
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new ConfigError(name, `must start with postgres:// (got ${url.protocol}//)`);
  }
  if (url.pathname.length <= 1) throw new ConfigError(name, "must name a database after the host, e.g. …:5432/myosicam");
  return raw;
}
