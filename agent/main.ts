import { Command, CommanderError, Option } from "commander";
import { toJson } from "@bufbuild/protobuf";
import { type InstanceSnapshot, InstanceSnapshotSchema } from "../gen/myosicam/agent/v1/snapshot_pb.js";
import { createLogger, type Logger } from "../services/lib/log.js";
import { discoverInstances } from "./discovery/discover.js";
import { createResourceSampler } from "./discovery/resources.js";
import { buildSnapshot } from "./snapshot.js";
import { PinMismatchError } from "../services/lib/pinned-certificate.js";
import { registerAgent } from "./register.js";
import { FatalAgentError, runAgent } from "./run.js";
import { defaultStateDir } from "./state.js";
import { agentVersion, releasePublicKey } from "./version.js";
import { releaseKeyId } from "../services/lib/releases/manifest.js";

/** `myosicam-agent`: registers this host with a panel, then heartbeats (and later syncs and applies). */
const program = new Command("myosicam-agent")
  .description("MyOsicam agent: speaks for one OScam server to the panel, outbound HTTPS only")
  .version(agentVersion)
  .showHelpAfterError()
  .exitOverride();

const stateDir = () => new Option("--state-dir <dir>", "where the agent keeps its identity and sealed token").default(defaultStateDir);
const logger = (): Logger => createLogger({ level: (process.env.LOG_LEVEL as "info") ?? "info" });

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8").trim();
}

program
  .command("register")
  .description("enroll this host with the panel using a single-use install token")
  .requiredOption("--panel <url>", "the panel, e.g. https://panel.example.com:8443")
  .option("--token <token>", "the install token (prefer --token-stdin: arguments are visible to other users)")
  .option("--token-stdin", "read the install token from stdin")
  .option("--pin <fingerprint>", "the panel certificate's sha256:<hex> fingerprint")
  .option("--oscam-dir <dir...>", "OScam config dirs to include, remembered in the state file")
  .addOption(stateDir())
  .action(async (opts: { panel: string; token?: string; tokenStdin?: boolean; pin?: string; oscamDir?: string[]; stateDir: string }) => {
    const installToken = opts.tokenStdin ? await readStdin() : opts.token;
    if (!installToken) throw new Error("give the install token with --token-stdin (or --token)");
    const state = await registerAgent({ panelUrl: opts.panel, installToken, pin: opts.pin, stateDir: opts.stateDir, log: logger(), oscamDirs: opts.oscamDir });
    process.stdout.write(
      `registered as server ${state.serverId}${state.pendingApproval ? " (pending: an operator must approve it with `npx myosicam agent approve`)" : ""}\n`,
    );
  });

program
  .command("release-key")
  .description("print the id of the release key this agent trusts for upgrades (none: it cannot be upgraded from the panel)")
  .action(() => {
    process.stdout.write(`${releasePublicKey ? releaseKeyId(releasePublicKey) : "none"}\n`);
  });

program
  .command("discover")
  .description("find the OScam instances on this host; with --print, show exactly the snapshots the agent would send")
  .option("--print", "print the snapshots as JSON (the same code path as Sync)")
  .option("--oscam-dir <dir...>", "config dirs to include besides what systemd units and running processes show", [])
  .option("--no-probe", "do not ask each WebIF whether it answers")
  .option("--show-secrets", "with --print, show account and WebIF passwords instead of masking them")
  .addOption(new Option("--unit-dir <dir...>", "systemd unit directories").hideHelp())
  .action(async (opts: { print?: boolean; oscamDir: string[]; probe: boolean; unitDir?: string[]; showSecrets?: boolean }) => {
    const instances = await discoverInstances({ configDirs: opts.oscamDir, unitDirs: opts.unitDir, probeWebif: opts.probe });
    if (!opts.print) {
      for (const i of instances) {
        process.stdout.write(
          `${i.name.padEnd(16)} ${i.running ? `running (pid ${i.pid})` : "stopped"}  ${i.configDir}  webif ${i.webif.enabled ? `${i.webif.ssl ? "https" : "http"}://${i.webif.host}:${i.webif.port}` : "off"}  [${i.sources.join(", ")}]\n`,
        );
        for (const problem of i.problems) process.stdout.write(`  problem: ${problem}\n`);
      }
      if (instances.length === 0) process.stdout.write("no OScam instance found; name its config dir with --oscam-dir\n");
      return;
    }
    const sampler = createResourceSampler();
    const built = [];
    for (const instance of instances) built.push(await buildSnapshot(instance, sampler));
    // Passwords are masked unless asked for: a terminal, a screen share or a pasted bug report
    // should not carry them. The agent sends them to the panel (sealed there); --print says so.
    if (!opts.showSecrets) for (const b of built) maskSecrets(b.snapshot);
    process.stdout.write(
      JSON.stringify(
        {
          secrets: opts.showSecrets ? "shown (--show-secrets)" : "masked as ******** (the agent sends them; --show-secrets shows them)",
          instances: built.map((b) => ({ snapshot: toJson(InstanceSnapshotSchema, b.snapshot), problems: b.problems })),
        },
        null,
        2,
      ) + "\n",
    );
  });

program
  .command("run")
  .description("heartbeat and sync with the panel until stopped (what the systemd unit runs)")
  .option("--oscam-dir <dir...>", "OScam config dirs to include besides the remembered ones", [])
  .addOption(new Option("--unit-dir <dir...>", "systemd unit directories").hideHelp())
  .addOption(stateDir())
  .action(async (opts: { stateDir: string; oscamDir: string[]; unitDir?: string[] }) => {
    const controller = new AbortController();
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => controller.abort());
    const { restart } = await runAgent({
      stateDir: opts.stateDir,
      log: logger(),
      signal: controller.signal,
      discovery: { configDirs: opts.oscamDir, unitDirs: opts.unitDir },
    });
    // Its service manager (systemd's Restart=always, through the start wrapper) starts the new version.
    if (restart) process.exit(0);
  });

// No top-level await: the artifact is a CommonJS bundle (what a Node single executable needs).
program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
  process.stderr.write(`myosicam-agent: ${err instanceof Error ? err.message : String(err)}\n`);
  // A wrong pin or a missing registration needs the operator: a distinct code, so systemd's
  // RestartPreventExitStatus can stop retrying.
  process.exit(err instanceof PinMismatchError || err instanceof FatalAgentError ? 3 : 1);
});

/** Replaces the passwords of a snapshot (accounts, WebIF) with a mask, keeping whether one is set. */
function maskSecrets(snapshot: InstanceSnapshot): void {
  const mask = (value: string) => (value ? "********" : "");
  for (const account of snapshot.accounts) account.password = mask(account.password);
  if (snapshot.webif) snapshot.webif.password = mask(snapshot.webif.password);
}
