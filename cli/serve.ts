import { relative } from "node:path";
import { selectServices, serviceRegistry } from "../services/index.js";
import { startHost, type Host } from "../services/host.js";
import { exitOnSignals } from "../services/lib/shutdown.js";
import { ensureConsoleBuilt } from "../web/build.js";
import { createCommandContext, printJson, type CommandContext, type GeneratedSetting } from "./context.js";

export interface ServeOptions {
  /** Registry names; all of them for `up`. */
  services: string[];
  json: boolean;
  /** `up`: everything in one process, with development trust between panel and admin. */
  up?: boolean;
}

/**
 * `up` and `serve`: starts the services, prints where they are, and runs until SIGINT/SIGTERM,
 * then stops in order and exits 0.
 */
export async function serveCommand(options: ServeOptions): Promise<void> {
  const services = selectServices(options.services);
  const hosts = (name: string) => services.some((s) => s.name === name);
  const generate: GeneratedSetting[] = [];
  if (hosts("crypto")) generate.push("PANEL_ENCRYPTION_KEY");
  if (hosts("admin")) generate.push("ADMIN_ENCRYPTION_KEY");
  // Only `up` runs the panel and admin together, so only it can make them trust each other.
  if (options.up) generate.push("PANEL_CALLER_SECRET", "PANEL_LICENSE_KEY");
  generate.push("METRICS_TOKEN");
  const context = await createCommandContext({ generate, developmentTrust: options.up });
  const host = await startHost(context.config, services, context.log);
  exitOnSignals({
    stop: host.stop,
    log: context.log,
    hardDeadlineMs: (context.config.shutdownTimeoutSeconds + 15) * 1000,
  });
  // After the start, so a bad setting stops it first, in one line; until the bundle is there the
  // console's pages answer 503 with why (the API serves meanwhile).
  if (hosts("panel")) await buildConsole(context);
  if (context.generated) {
    context.log.warn(
      { file: context.generated.file, settings: context.generated.settings },
      "generated settings on first start and stored them in the configuration file: back that file up",
    );
  }
  if (options.json) printJson(describeHost(host, context));
  else process.stdout.write(banner(host, context));
}

/**
 * Builds the console when its bundle is missing or older than its sources. A failed build does
 * not stop the panel: the API and the command line work without it, and the log says why.
 */
async function buildConsole(context: CommandContext) {
  try {
    const result = await ensureConsoleBuilt({
      onBuild: () => context.log.info("building the console (web/): its bundle is missing or older than its sources"),
    });
    if (result.built) context.log.info({ seconds: Number((result.durationMs / 1000).toFixed(1)) }, "console built");
  } catch (err) {
    context.log.error({ err }, "the console could not be built; the panel serves the API without it (run `npm run build:web` to see why)");
  }
}

/** All registry names: what `up` serves. */
export const allServiceNames = (): string[] => serviceRegistry.map((s) => s.name);

function describeHost(host: Host, context: CommandContext) {
  const { config } = context;
  return {
    status: "running",
    listeners: Object.fromEntries(host.listeners.map((l) => [l.name, { url: l.url, services: l.services }])),
    inProcessServices: host.inProcessServices,
    tls: { fingerprint: host.tls.fingerprint, source: host.tls.source, certFile: host.tls.certFile },
    dataDir: config.dataDir,
    embeddedPostgresPort: host.embeddedPostgresPort ?? null,
    installations: host.installations,
    generatedSettings: context.generated?.settings ?? [],
    // Only on the first start of an empty panel: the owner's e-mail and generated password.
    ...(host.report.firstLogin && { firstLogin: host.report.firstLogin }),
  };
}

function generatedLines({ generated }: CommandContext): string[] {
  if (!generated) return [];
  const lines = [
    "",
    `First start: generated ${generated.settings.join(", ")} into ${generated.file}.`,
    "Back that file up: without its keys, stored secrets cannot be decrypted.",
  ];
  if (generated.settings.includes("PANEL_LICENSE_KEY")) {
    lines.push(
      "Admin created the panel's caller, a public_pricing caller and a development license (10 servers,",
      "50 OScam instances), so the panel and admin trust each other. For real ones, on admin:",
      "  npx myosicam admin plan set pro --name Pro --max-servers 50 --max-instances 200 --price 4900",
      '  npx myosicam admin license issue --plan pro --customer "Example Ltd" --expires 2027-12-31',
      "  npx myosicam caller create <id> --allow /myosicam.license.v1.LicenseService/*",
      "then put the license key in PANEL_LICENSE_KEY (and the caller in PANEL_CALLER_ID/_SECRET) on the panel.",
    );
  }
  return lines;
}

/** The first login, printed once: the first start of an empty panel. */
function firstLoginLines(host: Host): string[] {
  const first = host.report.firstLogin;
  if (!first) return [];
  const panel = host.listeners.find((l) => l.services.includes("panel"));
  return [
    "",
    "First login (shown once; a new password is asked for at the first sign-in):",
    `  URL        ${panel?.url ?? "the panel's listener"}`,
    `  e-mail     ${first.email}`,
    `  password   ${first.password}`,
    "  Lost it? On this host: npx myosicam operator reset-password --email " + first.email,
  ];
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
    ...host.listeners.filter((l) => l.services.includes("panel")).map((l) => `  Console           ${l.url}/  (open it in a browser)`),
    ...(host.inProcessServices.length ? [`  in process only   ${host.inProcessServices.join(", ")}`] : []),
    `  TLS certificate   ${host.tls.source}: ${cert}`,
    `  SHA-256           ${host.tls.fingerprint}`,
    `  Data directory    ${config.dataDir}` + (host.embeddedPostgresPort ? ` (embedded PostgreSQL on 127.0.0.1:${host.embeddedPostgresPort})` : ""),
    ...Object.entries(host.installations).map(([db, id]) => `  ${(db + " id").padEnd(17)} ${id}`),
    ...(host.inProcessServices.includes("licensing")
      ? [
          `  License           checked with admin at ${config.adminUrl ?? host.listeners.find((l) => l.name === "admin")?.url ?? `ADMIN_HOST:ADMIN_PORT`} now and every 6 h (state in /readyz)`,
        ]
      : []),
    ...generatedLines(context),
    ...firstLoginLines(host),
    "",
    "Next:",
    ...(first ? [`  curl --cacert ${cert} ${first.url}/readyz`] : []),
    ...(host.listeners.some((l) => l.services.includes("panel"))
      ? [
          "  On this host `npx myosicam …` is signed in already (its credential is in the data directory):",
          "  npx myosicam agent list, npx myosicam token create --server <name>, npx myosicam --help.",
        ]
      : []),
    "  Agents pin the fingerprint above (`--pin`).",
    "  Stop with Ctrl+C: open streams are drained and the database is stopped cleanly.",
    "",
  ];
  return lines.join("\n");
}
