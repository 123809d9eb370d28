import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { ConfigError } from "../services/lib/config.js";
import { keysGenerateCommand, keysRotateCommand, keysStatusCommand } from "./keys.js";
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
  .action((opts: { json?: boolean }) => serveCommand({ services: allServiceNames(), json: Boolean(opts.json), up: true }));

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

const keys = program.command("keys").description("the encryption key for secrets at rest: generate, status, rotate");
keys
  .command("generate")
  .description("print a fresh random key (64 hex characters) for PANEL_ENCRYPTION_KEY")
  .addOption(json())
  .action((opts: { json?: boolean }) => keysGenerateCommand({ json: Boolean(opts.json) }));
keys
  .command("status")
  .description("show the active and previous key ids and how many stored values each sealed")
  .addOption(json())
  .action((opts: { json?: boolean }) => keysStatusCommand({ json: Boolean(opts.json) }));
keys
  .command("rotate")
  .description("re-encrypt every stored secret from PANEL_ENCRYPTION_KEY_PREVIOUS to PANEL_ENCRYPTION_KEY, then verify")
  .option("--dry-run", "only count what would be re-encrypted")
  .addOption(new Option("--batch-size <n>", "values per transaction").default("500").argParser(positiveInteger("--batch-size")))
  .addOption(new Option("--crash-after-batches <n>").hideHelp().argParser(positiveInteger("--crash-after-batches")))
  .addOption(json())
  .action((opts: { json?: boolean; dryRun?: boolean; batchSize: string | number; crashAfterBatches?: number }) =>
    keysRotateCommand({
      json: Boolean(opts.json),
      dryRun: Boolean(opts.dryRun),
      batchSize: Number(opts.batchSize),
      crashAfterBatches: opts.crashAfterBatches,
    }),
  );

function positiveInteger(flag: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 100_000) {
      throw new InvalidArgumentError(`${flag} takes a whole number from 1 to 100000`);
    }
    return Number(value);
  };
}

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
