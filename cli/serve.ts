import { relative } from "node:path";
import { selectServices, serviceRegistry } from "../services/index.js";
import { startHost, type Host } from "../services/host.js";
import { exitOnSignals } from "../services/lib/shutdown.js";
import { createCommandContext, printJson, type CommandContext } from "./context.js";

export interface ServeOptions {
  /** Registry names; all of them for `up`. */
  services: string[];
  json: boolean;
}

/**
 * `up` and `serve`: starts the services, prints where they are, and runs until SIGINT/SIGTERM,
 * then stops in order and exits 0.
 */
export async function serveCommand(options: ServeOptions): Promise<void> {
  const services = selectServices(options.services);
  const context = await createCommandContext({ generateEncryptionKey: services.some((s) => s.name === "crypto") });
  const host = await startHost(context.config, services, context.log);
  exitOnSignals({
    stop: host.stop,
    log: context.log,
    hardDeadlineMs: (context.config.shutdownTimeoutSeconds + 15) * 1000,
  });
  if (context.generatedKeyFile) {
    context.log.warn({ file: context.generatedKeyFile }, "generated PANEL_ENCRYPTION_KEY on first start and stored it in the configuration file: back that file up");
  }
  if (options.json) printJson(describeHost(host, context));
  else process.stdout.write(banner(host, context));
}

/** All registry names: what `up` serves. */
export const allServiceNames = (): string[] => serviceRegistry.map((s) => s.name);

function describeHost(host: Host, { config }: CommandContext) {
  return {
    status: "running",
    listeners: Object.fromEntries(host.listeners.map((l) => [l.name, { url: l.url, services: l.services }])),
    inProcessServices: host.inProcessServices,
    tls: { fingerprint: host.tls.fingerprint, source: host.tls.source, certFile: host.tls.certFile },
    dataDir: config.dataDir,
    embeddedPostgresPort: host.embeddedPostgresPort ?? null,
    installations: host.installations,
  };
}

function banner(host: Host, context: CommandContext): string {
  const { config } = context;
  const shortPath = relative(process.cwd(), host.tls.certFile);
  const cert = shortPath.startsWith("..") ? host.tls.certFile : shortPath;
  const first = host.listeners[0];
  const lines = [
    "",
    "MyOsicam is running.",
    ...host.listeners.map((l) => `  ${l.name.padEnd(6)} ${l.url}   (services: ${l.services.join(", ")})`),
    ...(host.inProcessServices.length ? [`  in process only   ${host.inProcessServices.join(", ")}`] : []),
    `  TLS certificate   ${host.tls.source}: ${cert}`,
    `  SHA-256           ${host.tls.fingerprint}`,
    `  Data directory    ${config.dataDir}` +
      (host.embeddedPostgresPort ? ` (embedded PostgreSQL on 127.0.0.1:${host.embeddedPostgresPort})` : ""),
    ...Object.entries(host.installations).map(([db, id]) => `  ${(db + " id").padEnd(17)} ${id}`),
    ...(context.generatedKeyFile ? ["", `A new PANEL_ENCRYPTION_KEY was generated into ${context.generatedKeyFile}.`, "Back that file up: without it, the secrets the panel stores cannot be decrypted."] : []),
    "",
    "Next:",
    ...(first ? [`  curl --cacert ${cert} ${first.url}/readyz`] : []),
    "  Agents pin the fingerprint above (`--pin`). The operator console and its first login",
    "  arrive with the operator API; until then the panel is driven with `npx myosicam --help`.",
    "  Stop with Ctrl+C: open streams are drained and the database is stopped cleanly.",
    "",
  ];
  return lines.join("\n");
}
