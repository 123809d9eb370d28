import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { ConfigError } from "../services/lib/config.js";
import { releaseVersionPattern } from "../services/lib/releases/manifest.js";
import type { DatabaseName } from "../services/lib/service-module.js";
import {
  callerCreateCommand,
  callerListCommand,
  callerRotateCommand,
  callerStatusCommand,
  licenseIssueCommand,
  licenseListCommand,
  licenseRevokeCommand,
  operatorCreateCommand,
  operatorListCommand,
  operatorPasswordCommand,
  planListCommand,
  planSetCommand,
} from "./admin.js";
import {
  agentApproveCommand,
  agentListCommand,
  agentRevokeCommand,
  agentUpgradeCommand,
  commandListCommand,
  commandSendCommand,
  tokenCreateCommand,
  tokenListCommand,
  tokenRevokeCommand,
} from "./agents.js";
import { batchPercent, rolloutActionCommand, rolloutListCommand, rolloutRollbackCommand, rolloutShowCommand, rolloutStartCommand } from "./rollouts.js";
import { releaseKeygenCommand, releaseListCommand, releaseSignCommand, releaseUploadCommand, releaseVerifyCommand } from "./releases.js";
import { apiClientCreateCommand, apiClientListCommand, apiClientRevokeCommand, apiClientRotateCommand } from "./api-clients.js";
import { auditExportCommand, auditListCommand, auditVerifyCommand, type AuditFilterOptions } from "./audit.js";
import { loginCommand } from "./login.js";
import {
  operatorCreateCommand as panelOperatorCreateCommand,
  operatorDeleteCommand,
  operatorDisableCommand,
  operatorListCommand as panelOperatorListCommand,
  operatorResetPasswordCommand,
  operatorUpdateCommand,
  whoAmICommand,
} from "./operators.js";
import {
  accountsAcceptDriftCommand,
  accountsChangeCommand,
  accountsChangeSetsCommand,
  accountsCreateCommand,
  accountsExportCommand,
  accountsHistoryCommand,
  accountsImportCommand,
  accountsListCommand,
  accountsPasswordCommand,
  accountsRetryCommand,
  accountsRevertCommand,
  accountsShowCommand,
  type EditFlags,
  whereKeys,
} from "./accounts.js";
import { alertAckCommand, alertListCommand, emailSetCommand, emailShowCommand, emailTestCommand, livenessCommand } from "./alerts.js";
import { keysGenerateCommand, keysRotateCommand, keysStatusCommand } from "./keys.js";
import {
  serverAddCommand,
  serverForgetHostKeyCommand,
  serverInstallCommand,
  serverListCommand,
  serverRemoveCommand,
  serverUninstallCommand,
} from "./servers.js";
import { errorLine } from "./errors.js";
import { migrateCommand } from "./migrate.js";
import { statusCommand } from "./status.js";
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
    serveCommand({
      services: opts.services
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean),
      json: Boolean(opts.json),
    }),
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
  .addOption(databaseOption())
  .addOption(json())
  .action((opts: { json?: boolean; database: DatabaseName }) => keysStatusCommand({ json: Boolean(opts.json), database: opts.database }));
keys
  .command("rotate")
  .description("re-encrypt every stored secret from the previous key to the new one (PANEL_ or ADMIN_ENCRYPTION_KEY), then verify")
  .addOption(databaseOption())
  .option("--dry-run", "only count what would be re-encrypted")
  .addOption(new Option("--batch-size <n>", "values per transaction").default("500").argParser(positiveInteger("--batch-size")))
  .addOption(new Option("--crash-after-batches <n>").hideHelp().argParser(positiveInteger("--crash-after-batches")))
  .addOption(json())
  .action((opts: { json?: boolean; database: DatabaseName; dryRun?: boolean; batchSize: string | number; crashAfterBatches?: number }) =>
    keysRotateCommand({
      json: Boolean(opts.json),
      database: opts.database,
      dryRun: Boolean(opts.dryRun),
      batchSize: Number(opts.batchSize),
      crashAfterBatches: opts.crashAfterBatches,
    }),
  );

const caller = program.command("caller").description("service callers admin trusts (HMAC-signed calls): create, list, revoke, rotate");
caller
  .command("create <id>")
  .description("create a caller and print its secret once")
  .requiredOption("--allow <procedures...>", "what it may call: /<package>.<Service>/<Method> or /<package>.<Service>/*")
  .option("--description <text>", "who or what it is")
  .addOption(json())
  .action((id: string, opts: { allow: string[]; description?: string; json?: boolean }) =>
    callerCreateCommand(id, { allow: opts.allow, description: opts.description, json: Boolean(opts.json) }),
  );
caller
  .command("list")
  .description("list callers, their status and what they may call (never their secrets)")
  .addOption(json())
  .action((opts: { json?: boolean }) => callerListCommand({ json: Boolean(opts.json) }));
caller
  .command("revoke <id>")
  .description("deactivate a caller: its very next request is refused, on every replica")
  .addOption(json())
  .action((id: string, opts: { json?: boolean }) => callerStatusCommand(id, "inactive", { json: Boolean(opts.json) }));
caller
  .command("activate <id>")
  .description("re-activate a revoked caller")
  .addOption(json())
  .action((id: string, opts: { json?: boolean }) => callerStatusCommand(id, "active", { json: Boolean(opts.json) }));
caller
  .command("rotate <id>")
  .description("give a caller a new secret; the old one stays valid for --overlap so it can switch without downtime")
  .addOption(
    new Option("--overlap <duration>", "how long the old secret stays valid: 0, 30m, 24h, 7d").default("24h").argParser(duration("--overlap", 30 * 86400)),
  )
  .addOption(json())
  .action((id: string, opts: { overlap: string | number; json?: boolean }) =>
    callerRotateCommand(id, {
      overlapSeconds: typeof opts.overlap === "number" ? opts.overlap : duration("--overlap", 30 * 86400)(opts.overlap),
      json: Boolean(opts.json),
    }),
  );

const admin = program.command("admin").description("the vendor's admin service: plans, licenses, admin operators");
const plan = admin.command("plan").description("plans and their quotas");
plan
  .command("set <id>")
  .description("create or replace a plan (licenses on it get the new quotas at their next check)")
  .requiredOption("--name <name>", "shown to customers")
  .addOption(new Option("--max-servers <n>", "0 = unlimited").makeOptionMandatory().argParser(count("--max-servers")))
  .addOption(new Option("--max-instances <n>", "0 = unlimited").makeOptionMandatory().argParser(count("--max-instances")))
  .addOption(new Option("--price <minor units>", "per month, in cents").default(0).argParser(count("--price")))
  .option("--currency <code>", "ISO 4217", "EUR")
  .option("--feature <text...>", "feature lines for the catalog", [])
  .option("--hidden", "leave it out of the public catalog")
  .addOption(json())
  .action(
    (
      id: string,
      opts: { name: string; maxServers: number; maxInstances: number; price: number; currency: string; feature: string[]; hidden?: boolean; json?: boolean },
    ) => planSetCommand(id, { ...opts, hidden: Boolean(opts.hidden), json: Boolean(opts.json) }),
  );
plan
  .command("list")
  .description("list every plan")
  .addOption(json())
  .action((opts: { json?: boolean }) => planListCommand({ json: Boolean(opts.json) }));
const license = admin.command("license").description("licenses: issue, list, revoke");
license
  .command("issue")
  .description("issue a license and print its key once (stored only as a hash)")
  .requiredOption("--plan <id>", "plan id")
  .requiredOption("--customer <name>", "who it is for")
  .addOption(new Option("--expires <when>", "YYYY-MM-DD (end of that day, UTC) or a duration such as 365d; default never").argParser(expiry))
  .option("--panel-id <uuid>", "bind it to one panel installation now (default: the first panel that validates it)")
  .addOption(json())
  .action((opts: { plan: string; customer: string; expires?: Date; panelId?: string; json?: boolean }) =>
    licenseIssueCommand({ ...opts, json: Boolean(opts.json) }),
  );
license
  .command("list")
  .description("list licenses (never their keys)")
  .addOption(json())
  .action((opts: { json?: boolean }) => licenseListCommand({ json: Boolean(opts.json) }));
license
  .command("revoke <id>")
  .description("revoke a license; its panel is refused at its next check")
  .option("--reason <text>", "recorded and shown to the panel", "")
  .addOption(json())
  .action((id: string, opts: { reason: string; json?: boolean }) => licenseRevokeCommand(id, { reason: opts.reason, json: Boolean(opts.json) }));
const operator = admin.command("operator").description("admin operators, who sign in to the admin API");
operator
  .command("create")
  .description("create an admin operator; the password is read from stdin (or prompted for)")
  .requiredOption("--email <address>", "the sign-in name")
  .addOption(json())
  .action((opts: { email: string; json?: boolean }) => operatorCreateCommand({ email: opts.email, json: Boolean(opts.json) }));
operator
  .command("password")
  .description("set an admin operator's password (read from stdin, or prompted for)")
  .requiredOption("--email <address>", "the sign-in name")
  .addOption(json())
  .action((opts: { email: string; json?: boolean }) => operatorPasswordCommand({ email: opts.email, json: Boolean(opts.json) }));
operator
  .command("list")
  .description("list admin operators")
  .addOption(json())
  .action((opts: { json?: boolean }) => operatorListCommand({ json: Boolean(opts.json) }));

const token = program.command("token").description("single-use install tokens that enroll an agent for a server");
token
  .command("create")
  .description("issue an install token (shown once) and print the bootstrap command that uses it")
  .requiredOption("--server <name>", "the server record it enrolls (created when new)")
  .addOption(new Option("--ttl <duration>", "how long it stays valid: 30m, 2h, 1d").default("30m"))
  .addOption(json())
  .action((opts: { server: string; ttl: string; json?: boolean }) =>
    tokenCreateCommand({ server: opts.server, ttlSeconds: duration("--ttl", 7 * 86400)(opts.ttl), json: Boolean(opts.json) }),
  );
token
  .command("list")
  .description("install tokens with their state: issued, expired, consumed, revoked")
  .addOption(json())
  .action((opts: { json?: boolean }) => tokenListCommand({ json: Boolean(opts.json) }));
token
  .command("revoke <hash-prefix>")
  .description("revoke an unused token (by the hash prefix `token list` shows)")
  .addOption(json())
  .action((prefix: string, opts: { json?: boolean }) => tokenRevokeCommand(prefix, { json: Boolean(opts.json) }));

const agent = program.command("agent").description("enrolled agents: list, approve, revoke");
agent
  .command("list")
  .description("every server with its agent's status (pending, online, unreachable, revoked), last seen, hostname and version")
  .addOption(json())
  .action((opts: { json?: boolean }) => agentListCommand({ json: Boolean(opts.json) }));
agent
  .command("approve <server-id>")
  .description("approve a pending agent (REQUIRE_AGENT_APPROVAL=true)")
  .addOption(json())
  .action((id: string, opts: { json?: boolean }) => agentApproveCommand(id, { json: Boolean(opts.json) }));
agent
  .command("revoke <server-id>")
  .description("revoke an agent: its token is dropped and its next call refused")
  .addOption(json())
  .action((id: string, opts: { json?: boolean }) => agentRevokeCommand(id, { json: Boolean(opts.json) }));
agent
  .command("upgrade <server...>")
  .description("replace the agent on these servers (ids or names) with an uploaded release; it rolls back by itself if the new version fails")
  .addOption(new Option("--version <x.y.z>", "the release to run (see `release list`)").makeOptionMandatory().argParser(releaseVersion))
  .option("--wait", "wait until every agent heartbeats in that version or failed (exit 1 unless all succeeded)")
  .addOption(json())
  .action((servers: string[], opts: { version: string; wait?: boolean; json?: boolean }) =>
    agentUpgradeCommand(servers, { version: opts.version, wait: Boolean(opts.wait), json: Boolean(opts.json) }),
  );

const rollout = program.command("rollout").description("staged agent upgrades: a canary, then batches, halting on failures");
rollout
  .command("start")
  .description("upgrade agents in stages: the canary first, then each batch once the previous one heartbeats in the new version")
  .addOption(new Option("--version <x.y.z>", "the uploaded release to go to (see `release list`)").makeOptionMandatory().argParser(releaseVersion))
  .option("--server <id or name...>", "only these servers (default: every enrolled server you may see that does not run it)", [])
  .addOption(new Option("--canary <n>", "servers in the first batch").default(1).argParser(count("--canary")))
  .addOption(new Option("--batch <percent>", "each later batch, as a share of the servers (e.g. 10%)").default(10).argParser(batchPercent))
  .addOption(new Option("--max-failures <n>", "failures tolerated before it halts").default(0).argParser(count("--max-failures")))
  .option("--pause-on-failure", "also pause after any batch with a failure, until `rollout resume`")
  .option("--follow", "print each server's progress until it ends or halts (exit 1 unless every server upgraded)")
  .addOption(json())
  .action(
    (opts: {
      version: string;
      server: string[];
      canary: number;
      batch: number;
      maxFailures: number;
      pauseOnFailure?: boolean;
      follow?: boolean;
      json?: boolean;
    }) =>
      rolloutStartCommand({
        version: opts.version,
        servers: opts.server,
        canary: opts.canary,
        batch: opts.batch,
        maxFailures: opts.maxFailures,
        pauseOnFailure: Boolean(opts.pauseOnFailure),
        follow: Boolean(opts.follow),
        json: Boolean(opts.json),
      }),
  );
rollout
  .command("list")
  .description("rollouts, newest first, with their progress")
  .addOption(json())
  .action((opts: { json?: boolean }) => rolloutListCommand({ json: Boolean(opts.json) }));
rollout
  .command("show <id>")
  .description("a rollout and every server's state; --follow until it ends")
  .option("--follow", "print progress until it ends or halts")
  .addOption(json())
  .action((id: string, opts: { follow?: boolean; json?: boolean }) => rolloutShowCommand(id, { follow: Boolean(opts.follow), json: Boolean(opts.json) }));
for (const action of ["pause", "resume", "cancel"] as const) {
  rollout
    .command(`${action} <id>`)
    .description(
      action === "pause"
        ? "send no further batch (what was sent goes on)"
        : action === "resume"
          ? "go on with a paused or halted rollout (failures so far are accepted)"
          : "stop: servers not yet sent are skipped, upgrades not yet delivered withdrawn",
    )
    .addOption(json())
    .action((id: string, opts: { json?: boolean }) => rolloutActionCommand(action, id, { json: Boolean(opts.json) }));
}
rollout
  .command("rollback <id>")
  .description("cancel the rollout and return every server it changed to the version it ran before, in stages")
  .addOption(new Option("--canary <n>", "servers in the first batch").default(1).argParser(count("--canary")))
  .addOption(new Option("--batch <percent>", "each later batch, as a share of the servers").default(10).argParser(batchPercent))
  .option("--follow", "print progress until it ends or halts")
  .addOption(json())
  .action((id: string, opts: { canary: number; batch: number; follow?: boolean; json?: boolean }) =>
    rolloutRollbackCommand(id, { canary: opts.canary, batch: opts.batch, follow: Boolean(opts.follow), json: Boolean(opts.json) }),
  );

const release = program.command("release").description("signed agent releases: keygen, sign, verify, upload, list");
release
  .command("keygen")
  .description("create an Ed25519 release key pair (the private key signs releases: keep it off the panel host)")
  .requiredOption("--out <dir>", "where to write release-private.pem and release-public.pem")
  .addOption(json())
  .action((opts: { out: string; json?: boolean }) => releaseKeygenCommand({ out: opts.out, json: Boolean(opts.json) }));
release
  .command("sign <dir>")
  .description("sign the release manifest `npm run build:agent` wrote in <dir>")
  .requiredOption("--key <private.pem>", "the release private key")
  .addOption(json())
  .action((dir: string, opts: { key: string; json?: boolean }) => releaseSignCommand(dir, { key: opts.key, json: Boolean(opts.json) }));
release
  .command("verify <dir>")
  .description("check a release's signature and every file's SHA-256")
  .requiredOption("--key <public.pem>", "the release public key")
  .addOption(json())
  .action((dir: string, opts: { key: string; json?: boolean }) => releaseVerifyCommand(dir, { key: opts.key, json: Boolean(opts.json) }));
release
  .command("upload <dir>")
  .description("store a signed release in the panel (checked against AGENT_RELEASE_PUBLIC_KEY_FILE) for agents to upgrade to")
  .addOption(json())
  .action((dir: string, opts: { json?: boolean }) => releaseUploadCommand(dir, { json: Boolean(opts.json) }));
release
  .command("list")
  .description("the uploaded releases, per version and target")
  .addOption(json())
  .action((opts: { json?: boolean }) => releaseListCommand({ json: Boolean(opts.json) }));

const command = program.command("command").description("commands for agents: send, list");
command
  .command("send")
  .description("send a command to a server's agent (delivered at once, or when it comes back)")
  .requiredOption("--server <id or name>", "the server")
  .option("--instance <name>", "the OScam instance it targets")
  .requiredOption("--kind <kind>", "resync, apply_accounts, apply_config, reload, start, stop, restart or upgrade_agent")
  .option("--payload <json>", "the kind's payload as JSON; - reads it from stdin")
  .option("--payload-file <path>", "the kind's payload as JSON, read from a file")
  .option("--wait", "wait until the agent reported the result (exit 1 unless it succeeded)")
  .addOption(json())
  .action((opts: { server: string; instance?: string; kind: string; payload?: string; payloadFile?: string; wait?: boolean; json?: boolean }) =>
    commandSendCommand({ ...opts, wait: Boolean(opts.wait), json: Boolean(opts.json) }),
  );
command
  .command("list")
  .description("the latest commands with their status: pending, delivered, succeeded, failed, expired")
  .addOption(json())
  .action((opts: { json?: boolean }) => commandListCommand({ json: Boolean(opts.json) }));

const server = program.command("server").description("saved servers: where the installer logs in over SSH, and installs of the agent there");
server
  .command("add <name>")
  .description("save a server's SSH address and credential (sealed); the host key is pinned on the first install")
  .requiredOption("--host <host>", "host name or address")
  .addOption(new Option("--port <n>", "SSH port").default(22).argParser(count("--port")))
  .requiredOption("--user <name>", "the user to log in as (root, or one allowed to sudo)")
  .option("--password-stdin", "read the password from stdin")
  .option("--key-file <path>", "a private key file (OpenSSH or PEM, no passphrase)")
  .addOption(json())
  .action((name: string, opts: { host: string; port: number; user: string; passwordStdin?: boolean; keyFile?: string; json?: boolean }) =>
    serverAddCommand({
      name,
      host: opts.host,
      port: opts.port,
      user: opts.user,
      passwordStdin: Boolean(opts.passwordStdin),
      keyFile: opts.keyFile,
      json: Boolean(opts.json),
    }),
  );
server
  .command("list")
  .description("saved servers with their pinned host keys (never their credentials)")
  .addOption(json())
  .action((opts: { json?: boolean }) => serverListCommand({ json: Boolean(opts.json) }));
server
  .command("remove <name>")
  .description("remove a saved server and its credential")
  .addOption(json())
  .action((name: string, opts: { json?: boolean }) => serverRemoveCommand(name, { json: Boolean(opts.json) }));
server
  .command("forget-host-key <name>")
  .description("after a server was reinstalled: the next install pins the host key it is offered")
  .addOption(json())
  .action((name: string, opts: { json?: boolean }) => serverForgetHostKeyCommand(name, { json: Boolean(opts.json) }));
server
  .command("install <name>")
  .description("install the agent on a saved server over SSH (a job a running panel runs)")
  .addOption(new Option("--root <how>", "how to become root: direct (the user is root), sudo (with the saved password), sudo-nopasswd").default("direct"))
  .option("--oscam-dir <dir...>", "OScam config dirs the agent should watch besides what it finds", [])
  .addOption(
    new Option("--wait-seconds <n>", "how long to wait for the agent's registration and first heartbeat").default(120).argParser(count("--wait-seconds")),
  )
  .option("--follow", "print the install's steps and output until it ends")
  .addOption(json())
  .action((name: string, opts: { root: string; oscamDir: string[]; waitSeconds: number; follow?: boolean; json?: boolean }) =>
    serverInstallCommand(name, {
      root: opts.root,
      oscamDir: opts.oscamDir,
      waitSeconds: opts.waitSeconds,
      follow: Boolean(opts.follow),
      json: Boolean(opts.json),
    }),
  );

server
  .command("uninstall <name>")
  .description("remove the agent from a saved server over SSH (deploy/uninstall.sh) and revoke it on the panel")
  .addOption(new Option("--root <how>", "how to become root: direct, sudo, sudo-nopasswd").default("direct"))
  .option("--follow", "print the uninstall's steps and output until it ends")
  .addOption(json())
  .action((name: string, opts: { root: string; follow?: boolean; json?: boolean }) =>
    serverUninstallCommand(name, { root: opts.root, follow: Boolean(opts.follow), json: Boolean(opts.json) }),
  );

const email = program.command("email").description("where alert e-mails go: SMTP or Mailgun");
email
  .command("smtp")
  .description("send alerts through an SMTP server")
  .requiredOption("--host <host>", "SMTP server")
  .addOption(new Option("--port <n>", "465 (TLS) or 587 (STARTTLS)").default(587).argParser(count("--port")))
  .option("--tls", "TLS from the first byte (port 465); otherwise STARTTLS when offered")
  .option("--user <name>", "SMTP user")
  .option("--password-stdin", "read the SMTP password from stdin")
  .requiredOption("--from <address>", "sender address")
  .requiredOption("--to <addresses...>", "alert recipients")
  .addOption(json())
  .action((opts: { host: string; port: number; tls?: boolean; user?: string; passwordStdin?: boolean; from: string; to: string[]; json?: boolean }) =>
    emailSetCommand(
      {
        provider: "smtp",
        from: opts.from,
        recipients: opts.to,
        smtp: { host: opts.host, port: opts.port, secure: Boolean(opts.tls), username: opts.user },
        secretFromStdin: Boolean(opts.passwordStdin),
      },
      { json: Boolean(opts.json) },
    ),
  );
email
  .command("mailgun")
  .description("send alerts through the Mailgun HTTP API")
  .requiredOption("--domain <domain>", "Mailgun sending domain")
  .addOption(new Option("--region <region>", "us or eu").choices(["us", "eu"]).default("us"))
  .requiredOption("--api-key-stdin", "read the API key from stdin")
  .requiredOption("--from <address>", "sender address")
  .requiredOption("--to <addresses...>", "alert recipients")
  .addOption(json())
  .action((opts: { domain: string; region: "us" | "eu"; from: string; to: string[]; json?: boolean }) =>
    emailSetCommand(
      { provider: "mailgun", from: opts.from, recipients: opts.to, mailgun: { domain: opts.domain, region: opts.region }, secretFromStdin: true },
      { json: Boolean(opts.json) },
    ),
  );
email
  .command("off")
  .description("stop alert e-mails (alerts stay in the console)")
  .addOption(json())
  .action((opts: { json?: boolean }) => emailSetCommand({ provider: "none", recipients: [], secretFromStdin: false }, { json: Boolean(opts.json) }));
email
  .command("show")
  .description("where alert e-mails go (secrets are shown only as set or not set)")
  .addOption(json())
  .action((opts: { json?: boolean }) => emailShowCommand({ json: Boolean(opts.json) }));
email
  .command("test")
  .description("send one test e-mail through the stored route, now")
  .addOption(json())
  .action((opts: { json?: boolean }) => emailTestCommand({ json: Boolean(opts.json) }));

const collect = (value: string, previous: string[]) => [...previous, value];
const whereOption = (c: Command) =>
  c.option("--where <key=value>", `select accounts (repeat; all must hold): ${whereKeys.join(", ")}`, collect, [] as string[]);
const followOption = (c: Command) => c.option("--follow", "print each account's result until the change set ends (exit 1 unless all applied)");
const accounts = program.command("accounts").description("subscriber accounts across the fleet: list, change, history, revert, CSV");
whereOption(accounts.command("list").description("the fleet's accounts, filtered"))
  .option("--sort <order>", "server, user, expiry or changed", "server")
  .option("--desc", "descending")
  .option("--limit <n>", "at most this many", count("--limit"), 500)
  .addOption(json())
  .action((opts: { where: string[]; sort: string; desc?: boolean; limit: number; json?: boolean }) =>
    accountsListCommand({ where: opts.where, sort: opts.sort, desc: Boolean(opts.desc), limit: opts.limit, json: Boolean(opts.json) }),
  );
followOption(whereOption(accounts.command("change").description("one change set over the selected accounts (every account matching --where, or --account …)")))
  .option("--account <server/instance/user>", "an account to change (repeat)", collect, [] as string[])
  .option("--enable", "enable")
  .option("--disable", "disable")
  .option("--delete", "delete the accounts")
  .option("--extend <days>", "extend the expiry by this many days (e.g. 30d), from today when already expired")
  .option("--expire <date>", "set the expiry (YYYY-MM-DD, or never)")
  .option("--set <key=value>", "set a key (group=1,2  caid=0963  ident=…  description=…  or any account key; repeat)", collect, [] as string[])
  .option("--unset <key>", "remove a key (repeat)", collect, [] as string[])
  .option("--rename-group <from:to>", "replace one group by another where it is set")
  .option("--password-stdin", "set the password read from stdin")
  .option("--description <text>", "why, as the history shows it")
  .option("--dry-run", "show what would change; store and send nothing")
  .addOption(json())
  .action(
    (
      opts: EditFlags & {
        where: string[];
        account: string[];
        description?: string;
        dryRun?: boolean;
        follow?: boolean;
        json?: boolean;
      },
    ) =>
      accountsChangeCommand({
        where: opts.where,
        account: opts.account,
        edits: opts,
        description: opts.description,
        dryRun: Boolean(opts.dryRun),
        follow: Boolean(opts.follow),
        json: Boolean(opts.json),
      }),
  );
followOption(accounts.command("create").description("create one account on each --on instance, in one change set"))
  .requiredOption("--on <server/instance>", "where (repeat)", collect, [] as string[])
  .requiredOption("--user <name>", "the user name")
  .option("--password-stdin", "read the password from stdin")
  .option("--groups <list>", "e.g. 1,2")
  .option("--expire <date>", "last valid day, YYYY-MM-DD")
  .option("--caid <list>", "e.g. 0963,098C")
  .option("--ident <list>", "e.g. 0963:000000")
  .option("--description <text>", "a description")
  .option("--disabled", "create it disabled")
  .addOption(json())
  .action(
    (opts: {
      on: string[];
      user: string;
      passwordStdin?: boolean;
      groups?: string;
      expire?: string;
      caid?: string;
      ident?: string;
      description?: string;
      disabled?: boolean;
      follow?: boolean;
      json?: boolean;
    }) =>
      accountsCreateCommand({
        ...opts,
        passwordStdin: Boolean(opts.passwordStdin),
        disabled: Boolean(opts.disabled),
        follow: Boolean(opts.follow),
        json: Boolean(opts.json),
      }),
  );
accounts
  .command("change-sets")
  .description("the latest change sets with their status")
  .addOption(json())
  .action((opts: { json?: boolean }) => accountsChangeSetsCommand({ json: Boolean(opts.json) }));
followOption(accounts.command("show <change-set>").description("a change set's progress per instance"))
  .addOption(json())
  .action((id: string, opts: { follow?: boolean; json?: boolean }) => accountsShowCommand(id, { follow: Boolean(opts.follow), json: Boolean(opts.json) }));
followOption(accounts.command("retry <change-set>").description("send the failed accounts of a change set again (only those)"))
  .addOption(json())
  .action((id: string, opts: { follow?: boolean; json?: boolean }) => accountsRetryCommand(id, { follow: Boolean(opts.follow), json: Boolean(opts.json) }));
followOption(accounts.command("revert <change-set>").description("undo a change set: its inverse, sent as a new change set"))
  .addOption(json())
  .action((id: string, opts: { follow?: boolean; json?: boolean }) => accountsRevertCommand(id, { follow: Boolean(opts.follow), json: Boolean(opts.json) }));
accounts
  .command("history")
  .description("field-level changes of one account or one change set, newest first")
  .option("--account <server/instance/user>", "one account")
  .option("--change-set <id>", "one change set")
  .addOption(json())
  .action((opts: { account?: string; changeSet?: string; json?: boolean }) => accountsHistoryCommand({ ...opts, json: Boolean(opts.json) }));
whereOption(accounts.command("export").description("the (filtered) table as CSV on stdout, without passwords")).action((opts: { where: string[] }) =>
  accountsExportCommand(opts),
);
followOption(accounts.command("import <file>").description("create the accounts of a CSV (- for stdin); preview with --dry-run"))
  .option("--dry-run", "show what would be created where, and which rows are invalid; create nothing")
  .option("--skip-invalid", "create the valid rows even when others are invalid")
  .option("--description <text>", "why, as the history shows it")
  .addOption(json())
  .action((file: string, opts: { dryRun?: boolean; skipInvalid?: boolean; description?: string; follow?: boolean; json?: boolean }) =>
    accountsImportCommand(file, {
      dryRun: Boolean(opts.dryRun),
      skipInvalid: Boolean(opts.skipInvalid),
      description: opts.description,
      follow: Boolean(opts.follow),
      json: Boolean(opts.json),
    }),
  );
accounts
  .command("password <server/instance/user>")
  .description("show one account's password (operator role; audited)")
  .addOption(json())
  .action((account: string, opts: { json?: boolean }) => accountsPasswordCommand(account, { json: Boolean(opts.json) }));
accounts
  .command("accept-drift <server/instance>")
  .description("accept the hand edits found on an instance (clears its drift marks)")
  .addOption(json())
  .action((target: string, opts: { json?: boolean }) => accountsAcceptDriftCommand(target, { json: Boolean(opts.json) }));

program
  .command("status")
  .description("the fleet at a glance: servers per status, instances, accounts expiring, open alerts, the license")
  .option("--tag <tag...>", "only servers carrying every one of these tags", [])
  .addOption(new Option("--expiring-days <n>", "what counts as expiring (default 7)").argParser(count("--expiring-days")))
  .addOption(json())
  .action((opts: { json?: boolean; tag: string[]; expiringDays?: number }) =>
    statusCommand({ json: Boolean(opts.json), tags: opts.tag, expiringDays: opts.expiringDays }),
  );

const alerts = program.command("alerts").description("alerts the panel raised: list, acknowledge");
alerts
  .command("list")
  .description("the latest alerts, newest first")
  .option("--open", "only those not yet acknowledged")
  .addOption(json())
  .action((opts: { open?: boolean; json?: boolean }) => alertListCommand({ open: Boolean(opts.open), json: Boolean(opts.json) }));
alerts
  .command("ack <ids...>")
  .description("acknowledge alerts by id")
  .addOption(json())
  .action((ids: string[], opts: { json?: boolean }) => alertAckCommand(ids, { json: Boolean(opts.json) }));

program
  .command("liveness [missed-heartbeats]")
  .description("show, or set, how many missed heartbeats make a server unreachable")
  .addOption(json())
  .action((missed: string | undefined, opts: { json?: boolean }) =>
    livenessCommand(missed === undefined ? undefined : count("missed-heartbeats")(missed), { json: Boolean(opts.json) }),
  );

program
  .command("login")
  .description("sign in to a panel from this machine: stores an API client credential in ~/.config/myosicam (0600)")
  .requiredOption("--panel <url>", "the panel, e.g. https://panel.example.com:8443")
  .requiredOption("--email <address>", "your operator e-mail")
  .option("--fingerprint <sha256:hex>", "the panel certificate's SHA-256, as `npm start` printed it (needed unless this machine trusts its certificate)")
  .addOption(json())
  .action((opts: { panel: string; email: string; fingerprint?: string; json?: boolean }) => loginCommand({ ...opts, json: Boolean(opts.json) }));

program
  .command("whoami")
  .description("who this command line acts as, on which panel")
  .addOption(json())
  .action((opts: { json?: boolean }) => whoAmICommand({ json: Boolean(opts.json) }));

const scopeOptions = (c: Command) =>
  c.option("--tag <tags...>", "limit to servers carrying any of these tags").option("--server-id <ids...>", "limit to these servers");

const panelOperator = program.command("operator").description("the people who sign in to this panel: list, create, update, disable, delete");
panelOperator
  .command("list")
  .description("every operator with role, scope and last sign-in")
  .addOption(json())
  .action((opts: { json?: boolean }) => panelOperatorListCommand({ json: Boolean(opts.json) }));
scopeOptions(
  panelOperator
    .command("create")
    .description("create an operator; prints a one-time password (a new one is chosen at the first sign-in)")
    .requiredOption("--email <address>", "the sign-in name")
    .requiredOption("--role <role>", "viewer, operator, admin or owner"),
)
  .addOption(json())
  .action((opts: { email: string; role: string; tag?: string[]; serverId?: string[]; json?: boolean }) =>
    panelOperatorCreateCommand({ ...opts, json: Boolean(opts.json) }),
  );
scopeOptions(
  panelOperator
    .command("update <email>")
    .description("set an operator's role and scope (no --tag/--server-id: every server)")
    .requiredOption("--role <role>", "viewer, operator, admin or owner"),
)
  .addOption(json())
  .action((email: string, opts: { role: string; tag?: string[]; serverId?: string[]; json?: boolean }) =>
    operatorUpdateCommand(email, { ...opts, json: Boolean(opts.json) }),
  );
panelOperator
  .command("disable <email>")
  .description("disable an operator: their sessions and API clients end at once")
  .addOption(json())
  .action((email: string, opts: { json?: boolean }) => operatorDisableCommand(email, true, { json: Boolean(opts.json) }));
panelOperator
  .command("enable <email>")
  .description("let a disabled operator sign in again")
  .addOption(json())
  .action((email: string, opts: { json?: boolean }) => operatorDisableCommand(email, false, { json: Boolean(opts.json) }));
panelOperator
  .command("delete <email>")
  .description("delete an operator (the last owner cannot be deleted)")
  .addOption(json())
  .action((email: string, opts: { json?: boolean }) => operatorDeleteCommand(email, { json: Boolean(opts.json) }));
panelOperator
  .command("reset-password")
  .description("on the panel host, in its database: give an operator a new password (the way back in)")
  .requiredOption("--email <address>", "whose password")
  .option("--password-stdin", "read the new password from stdin instead of generating one")
  .addOption(json())
  .action((opts: { email: string; passwordStdin?: boolean; json?: boolean }) =>
    operatorResetPasswordCommand({ email: opts.email, passwordStdin: Boolean(opts.passwordStdin), json: Boolean(opts.json) }),
  );

const apiclient = program.command("apiclient").description("API clients for scripts and integrators (HMAC-signed requests, docs/api.md)");
scopeOptions(
  apiclient
    .command("create <name>")
    .description("create an API client; prints its id and secret once")
    .requiredOption("--role <role>", "viewer, operator, admin or owner (at most your own)")
    .option("--description <text>", "what it is for"),
)
  .addOption(json())
  .action((name: string, opts: { role: string; description?: string; tag?: string[]; serverId?: string[]; json?: boolean }) =>
    apiClientCreateCommand(name, { ...opts, json: Boolean(opts.json) }),
  );
apiclient
  .command("list")
  .description("API clients with their last use (never a secret)")
  .addOption(json())
  .action((opts: { json?: boolean }) => apiClientListCommand({ json: Boolean(opts.json) }));
apiclient
  .command("rotate <id>")
  .description("a new secret; the old one stays valid for --overlap so the client can switch without downtime")
  .addOption(new Option("--overlap <duration>", "0, 30m, 24h, 7d").default("24h"))
  .addOption(json())
  .action((id: string, opts: { overlap: string; json?: boolean }) =>
    apiClientRotateCommand(id, { overlapSeconds: duration("--overlap", 30 * 86400)(opts.overlap), json: Boolean(opts.json) }),
  );
apiclient
  .command("revoke <id>")
  .description("revoke an API client: its next request is refused")
  .addOption(json())
  .action((id: string, opts: { json?: boolean }) => apiClientRevokeCommand(id, { json: Boolean(opts.json) }));

const auditFilters = (c: Command) =>
  c
    .option("--actor <who>", "operator e-mail, API client name or id")
    .option("--action <rpc>", "e.g. ServerService.ApproveServers, or ServerService. for all of a service")
    .option("--target <text>", "part of the target, e.g. a server id")
    .option("--since <when>", "from this date or time (UTC)")
    .option("--until <when>", "before this date or time (UTC)")
    .option("--failures", "only refused or failed calls");
const audit = program.command("audit").description("the audit log of every change: list, export as CSV, verify the hash chain");
auditFilters(audit.command("list").description("the newest audit rows"))
  .addOption(new Option("--limit <n>", "how many rows (at most 500)").default(50).argParser(count("--limit")))
  .addOption(json())
  .action((opts: AuditFilterOptions & { limit: number; json?: boolean }) =>
    auditListCommand({ ...opts, limit: Math.min(opts.limit, 500), json: Boolean(opts.json) }),
  );
auditFilters(audit.command("export").description("every matching row as CSV on stdout, oldest first")).action((opts: AuditFilterOptions) =>
  auditExportCommand(opts),
);
audit
  .command("verify")
  .description("on the panel host: recompute the hash chain and report the first row that was edited or removed (exit 1)")
  .addOption(json())
  .action((opts: { json?: boolean }) => auditVerifyCommand({ json: Boolean(opts.json) }));

function databaseOption() {
  return new Option("--database <name>", "whose secrets: panel (PANEL_ENCRYPTION_KEY) or admin (ADMIN_ENCRYPTION_KEY)")
    .choices(["panel", "admin"])
    .default("panel");
}

/** A release version as agents report it: MAJOR.MINOR.PATCH, optionally -pre.release. */
function releaseVersion(value: string): string {
  if (!releaseVersionPattern.test(value))
    throw new InvalidArgumentError(`--version takes a release version such as 0.1.1 (see \`release list\`), got "${value}"`);
  return value;
}

function count(flag: string) {
  return (value: string): number => {
    if (!/^\d{1,9}$/.test(value)) throw new InvalidArgumentError(`${flag} takes a whole number (0 or more)`);
    return Number(value);
  };
}

/** `0`, `90s`, `30m`, `24h`, `7d` → seconds, at most `max`. */
function duration(flag: string, max: number) {
  return (value: string): number => {
    const match = /^(\d{1,7})([smhd]?)$/.exec(value.trim());
    if (!match) throw new InvalidArgumentError(`${flag} takes a duration such as 0, 30m, 24h or 7d`);
    const seconds = Number(match[1]) * { "": 1, s: 1, m: 60, h: 3600, d: 86400 }[match[2] as "" | "s" | "m" | "h" | "d"];
    if (seconds > max) throw new InvalidArgumentError(`${flag} is at most ${max / 86400} days`);
    return seconds;
  };
}

/** `YYYY-MM-DD` (valid through the end of that day, UTC) or `<n>d` from now. */
function expiry(value: string): Date {
  const days = /^(\d{1,5})d$/.exec(value);
  if (days) return new Date(Date.now() + Number(days[1]) * 86400_000);
  const date = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  const parsed = date ? new Date(`${value}T23:59:59.999Z`) : undefined;
  if (!parsed || Number.isNaN(parsed.getTime()) || parsed.toISOString().slice(0, 10) !== value) {
    throw new InvalidArgumentError("--expires takes a date YYYY-MM-DD or a number of days such as 365d");
  }
  return parsed;
}

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
  process.stderr.write(`myosicam: ${errorLine(err)}\n`);
  if (process.env.LOG_LEVEL === "debug" && err instanceof Error && !(err instanceof ConfigError)) {
    process.stderr.write(`${err.stack}\n`);
  }
  process.exit(1);
}
