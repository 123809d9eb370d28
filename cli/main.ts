import { Command, CommanderError, Option } from "commander";
import { ConfigError } from "../services/lib/config.js";
import { migrateCommand } from "./migrate.js";
import { allServiceNames, serveCommand } from "./serve.js";

/** `myosicam`: thin; each command lives in its own module. Errors print one line and exit 1. */
const program = new Command("myosicam")
  .description("MyOsicam: one management plane for many OScam servers")
  .showHelpAfterError("(run `npx myosicam --help` for usage)")
  .exitOverride();

const json = () => new Option("--json", "print exactly one JSON object on stdout");

program
  .command("up")
  .description("run the panel and admin with an embedded PostgreSQL (what `npm start` runs)")
  .addOption(json())
  .action((opts: { json?: boolean }) => serveCommand({ services: allServiceNames(), json: Boolean(opts.json) }));

program
  .command("serve")
  .description("run some services in this process, e.g. --services=agents on one host, admin on another")
  .requiredOption("--services <names>", `comma-separated: ${allServiceNames().join(", ")}`)
  .addOption(json())
  .action((opts: { services: string; json?: boolean }) =>
    serveCommand({ services: opts.services.split(",").map((s) => s.trim()).filter(Boolean), json: Boolean(opts.json) }),
  );

program
  .command("migrate")
  .description("apply pending database migrations and exit")
  .addOption(json())
  .action((opts: { json?: boolean }) => migrateCommand({ json: Boolean(opts.json) }));

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version end here with code 0; usage errors were already printed.
    process.exit(err.exitCode === 0 ? 0 : 2);
  }
  const message = err instanceof ConfigError ? `configuration error: ${err.message}` : err instanceof Error ? err.message : String(err);
  process.stderr.write(`myosicam: ${message}\n`);
  if (process.env.LOG_LEVEL === "debug" && err instanceof Error && !(err instanceof ConfigError)) {
    process.stderr.write(`${err.stack}\n`);
  }
  process.exit(1);
}
