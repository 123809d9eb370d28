import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { AgentService } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { EnrollmentService } from "../../gen/myosicam/agent/v1/enrollment_pb.js";
import { InstallerService } from "../../gen/myosicam/install/v1/install_pb.js";
import { InstallService } from "../../gen/myosicam/panel/v1/install_pb.js";
import { InstanceService } from "../../gen/myosicam/panel/v1/instance_pb.js";
import { AccountService } from "../../gen/myosicam/panel/v1/account_pb.js";
import { FleetService } from "../../gen/myosicam/panel/v1/fleet_pb.js";
import { AlertService } from "../../gen/myosicam/panel/v1/alert_pb.js";
import { RegistrationService } from "../../gen/myosicam/agent/v1/registration_pb.js";
import { RolloutService } from "../../gen/myosicam/panel/v1/rollout_pb.js";
import { ApiClientService } from "../../gen/myosicam/panel/v1/api_client_pb.js";
import { AuditService } from "../../gen/myosicam/panel/v1/audit_pb.js";
import { AuthService } from "../../gen/myosicam/panel/v1/auth_pb.js";
import { CommandService } from "../../gen/myosicam/panel/v1/command_pb.js";
import { OperatorService } from "../../gen/myosicam/panel/v1/operator_pb.js";
import { ServerService } from "../../gen/myosicam/panel/v1/server_pb.js";
import { isScoped, principalOf, roleAtLeast, type RoleName } from "../lib/principal.js";

/**
 * Who may call a method of the panel listener:
 * - `public`: anyone (Login);
 * - `agent`: an enrolled agent, by HMAC with its agent token (the agents service checks it);
 * - `install_token`: whoever holds a valid install token (registration checks it);
 * - `internal`: other services of this process only; refused on the network;
 * - `signed_in`: any operator or API client, even one that must change its password first;
 * - a role: at least that role.
 */
export type Access = "public" | "agent" | "install_token" | "internal" | "signed_in" | RoleName;

/**
 * Which servers a method touches:
 * - `servers`: the handler filters by the caller's scope (out of scope is NotFound);
 * - `fleet`: panel-wide state (operators, API clients, the audit log): only unscoped callers;
 * - `self`: only the caller's own session or password;
 * - `none`: not an operator call.
 */
export type ScopeRule = "servers" | "fleet" | "self" | "none";

export interface Policy {
  access: Access;
  scope: ScopeRule;
  /** A mutation: runs in a transaction with its audit row, and needs the CSRF headers from browsers. */
  mutation: boolean;
}

const read = (access: Access, scope: ScopeRule): Policy => ({ access, scope, mutation: false });
const write = (access: Access, scope: ScopeRule): Policy => ({ access, scope, mutation: true });

/**
 * Every RPC of the panel listener and the least it needs: the one place authorization is decided.
 * A method missing here is refused (and a test fails), so a new RPC cannot ship unguarded.
 */
export const panelPolicies: Readonly<Record<string, Policy>> = {
  // myosicam.agent.v1: agents, not operators (their own checks, DESIGN.md §3.1–3.3).
  [`/${RegistrationService.typeName}/Register`]: read("install_token", "none"),
  [`/${AgentService.typeName}/Heartbeat`]: read("agent", "none"),
  [`/${AgentService.typeName}/Sync`]: read("agent", "none"),
  [`/${AgentService.typeName}/Subscribe`]: read("agent", "none"),
  [`/${AgentService.typeName}/ReportResult`]: read("agent", "none"),
  [`/${AgentService.typeName}/DownloadRelease`]: read("agent", "none"),

  // Between services of one panel process, through in-memory transports.
  [`/${EnrollmentService.typeName}/IssueInstallToken`]: read("internal", "none"),
  [`/${EnrollmentService.typeName}/GetServerLiveness`]: read("internal", "none"),
  [`/${EnrollmentService.typeName}/RevokeServerByName`]: read("internal", "none"),
  [`/${InstallerService.typeName}/StartInstall`]: read("internal", "none"),
  [`/${InstallerService.typeName}/StartUninstall`]: read("internal", "none"),

  [`/${AuthService.typeName}/Login`]: write("public", "self"),
  [`/${AuthService.typeName}/Logout`]: write("signed_in", "self"),
  [`/${AuthService.typeName}/WhoAmI`]: read("signed_in", "self"),
  [`/${AuthService.typeName}/ChangePassword`]: write("signed_in", "self"),
  // Another operator's sessions need admin; the handler checks that part.
  [`/${AuthService.typeName}/ListSessions`]: read("viewer", "self"),
  [`/${AuthService.typeName}/RevokeSession`]: write("viewer", "self"),

  [`/${OperatorService.typeName}/ListOperators`]: read("admin", "fleet"),
  [`/${OperatorService.typeName}/CreateOperator`]: write("admin", "fleet"),
  [`/${OperatorService.typeName}/UpdateOperator`]: write("admin", "fleet"),
  [`/${OperatorService.typeName}/SetOperatorDisabled`]: write("admin", "fleet"),
  [`/${OperatorService.typeName}/ResetOperatorPassword`]: write("admin", "fleet"),
  [`/${OperatorService.typeName}/DeleteOperator`]: write("admin", "fleet"),

  // Anyone may hold API clients acting for themselves (`myosicam login`); unscoped admins manage
  // every client. The handlers decide which clients a caller sees.
  [`/${ApiClientService.typeName}/CreateApiClient`]: write("viewer", "self"),
  [`/${ApiClientService.typeName}/ListApiClients`]: read("viewer", "self"),
  [`/${ApiClientService.typeName}/RotateApiClientSecret`]: write("viewer", "self"),
  [`/${ApiClientService.typeName}/RevokeApiClient`]: write("viewer", "self"),

  [`/${AuditService.typeName}/ListAuditEvents`]: read("admin", "fleet"),
  [`/${AuditService.typeName}/ExportAuditEvents`]: read("admin", "fleet"),

  [`/${ServerService.typeName}/ListServers`]: read("viewer", "servers"),
  [`/${ServerService.typeName}/CountServers`]: read("viewer", "servers"),
  [`/${ServerService.typeName}/GetServer`]: read("viewer", "servers"),
  [`/${ServerService.typeName}/AddServer`]: write("operator", "servers"),
  [`/${ServerService.typeName}/RerunBootstrap`]: write("operator", "servers"),
  [`/${ServerService.typeName}/ListInstallTokens`]: read("operator", "servers"),
  [`/${ServerService.typeName}/RevokeInstallToken`]: write("operator", "servers"),
  [`/${ServerService.typeName}/SetServerTags`]: write("operator", "servers"),
  [`/${ServerService.typeName}/ApproveServers`]: write("operator", "servers"),
  [`/${ServerService.typeName}/RevokeServers`]: write("admin", "servers"),
  [`/${ServerService.typeName}/RemoveServer`]: write("admin", "servers"),

  [`/${CommandService.typeName}/SendCommand`]: write("operator", "servers"),
  [`/${CommandService.typeName}/ListCommands`]: read("viewer", "servers"),
  [`/${CommandService.typeName}/GetCommand`]: read("viewer", "servers"),
  [`/${CommandService.typeName}/WatchCommands`]: read("viewer", "servers"),

  // Agent upgrades across the fleet: an admin's decision; following them is anyone's.
  [`/${RolloutService.typeName}/StartRollout`]: write("admin", "servers"),
  [`/${RolloutService.typeName}/PauseRollout`]: write("admin", "servers"),
  [`/${RolloutService.typeName}/ResumeRollout`]: write("admin", "servers"),
  [`/${RolloutService.typeName}/CancelRollout`]: write("admin", "servers"),
  [`/${RolloutService.typeName}/RollBackRollout`]: write("admin", "servers"),
  [`/${RolloutService.typeName}/GetRollout`]: read("viewer", "servers"),
  [`/${RolloutService.typeName}/ListRollouts`]: read("viewer", "servers"),
  [`/${RolloutService.typeName}/WatchRollout`]: read("viewer", "servers"),
  [`/${RolloutService.typeName}/ListReleases`]: read("viewer", "none"),
  [`/${RolloutService.typeName}/CountAgentVersions`]: read("viewer", "servers"),

  [`/${InstanceService.typeName}/ListInstances`]: read("viewer", "servers"),
  [`/${InstanceService.typeName}/GetResourceHistory`]: read("viewer", "servers"),

  // Accounts of the servers in scope; a scoped caller sees only change sets wholly within it.
  [`/${AccountService.typeName}/ListAccounts`]: read("viewer", "servers"),
  [`/${AccountService.typeName}/RevealPassword`]: write("operator", "servers"),
  [`/${AccountService.typeName}/CreateChangeSet`]: write("operator", "servers"),
  [`/${AccountService.typeName}/GetChangeSet`]: read("viewer", "servers"),
  [`/${AccountService.typeName}/ListChangeSets`]: read("viewer", "servers"),
  [`/${AccountService.typeName}/ListChangeSetItems`]: read("viewer", "servers"),
  [`/${AccountService.typeName}/WatchChangeSet`]: read("viewer", "servers"),
  [`/${AccountService.typeName}/RetryChangeSet`]: write("operator", "servers"),
  [`/${AccountService.typeName}/RevertChangeSet`]: write("operator", "servers"),
  [`/${AccountService.typeName}/ListHistory`]: read("viewer", "servers"),
  [`/${AccountService.typeName}/AcknowledgeDrift`]: write("operator", "servers"),
  [`/${AccountService.typeName}/ExportAccounts`]: read("viewer", "servers"),
  [`/${AccountService.typeName}/ImportAccounts`]: write("operator", "servers"),

  // Each event is filtered by the watcher's scope (and install jobs by role) in the handler.
  [`/${FleetService.typeName}/WatchEvents`]: read("viewer", "servers"),
  [`/${FleetService.typeName}/GetFleetSummary`]: read("viewer", "servers"),

  [`/${AlertService.typeName}/ListAlerts`]: read("viewer", "servers"),
  [`/${AlertService.typeName}/AcknowledgeAlerts`]: write("operator", "servers"),
  [`/${AlertService.typeName}/GetEmailSettings`]: read("admin", "fleet"),
  [`/${AlertService.typeName}/SetEmailSettings`]: write("admin", "fleet"),
  [`/${AlertService.typeName}/SendTestEmail`]: write("admin", "fleet"),
  [`/${AlertService.typeName}/GetLivenessSettings`]: read("viewer", "servers"),
  [`/${AlertService.typeName}/SetLivenessSettings`]: write("admin", "fleet"),

  // Saved servers hold root-capable SSH credentials: admins keep them; operators run installs.
  [`/${InstallService.typeName}/AddSavedServer`]: write("admin", "fleet"),
  [`/${InstallService.typeName}/ListSavedServers`]: read("operator", "fleet"),
  [`/${InstallService.typeName}/RemoveSavedServer`]: write("admin", "fleet"),
  [`/${InstallService.typeName}/ForgetHostKey`]: write("admin", "fleet"),
  [`/${InstallService.typeName}/StartInstall`]: write("operator", "fleet"),
  [`/${InstallService.typeName}/StartUninstall`]: write("admin", "fleet"),
  [`/${InstallService.typeName}/ListInstallJobs`]: read("operator", "fleet"),
  [`/${InstallService.typeName}/WatchInstallJob`]: read("operator", "fleet"),
};

/** The services of the operator API (`myosicam.panel.v1`) this panel serves. */
export const operatorServices: readonly DescService[] = [
  AuthService,
  OperatorService,
  ApiClientService,
  AuditService,
  ServerService,
  CommandService,
  RolloutService,
  AlertService,
  InstallService,
  InstanceService,
  AccountService,
  FleetService,
];

const operatorTypeNames = new Set(operatorServices.map((s) => s.typeName));

/** Whether a proto service is part of the operator API. */
export const isOperatorService = (typeName: string): boolean => operatorTypeNames.has(typeName);

/** The policy of a procedure (`/<service>/<method>`); undefined when the table has no entry. */
export const policyOf = (procedure: string): Policy | undefined => panelPolicies[procedure];

/** The refusal of an in-process service called over the network. */
export const internalMethod = (procedure: string) =>
  new ConnectError(`${procedure} is internal to the panel and not served on the network`, Code.PermissionDenied);

/** The refusal for a method the table does not know: deny by default. */
export const unlistedMethod = (procedure: string) =>
  new ConnectError(`${procedure} has no access rule on this panel; it is refused until one is added`, Code.PermissionDenied);

/**
 * Enforces the table for operator-API calls, after authentication: the role, the fleet-wide rule
 * for scoped callers, and the first-login password change.
 */
export function createAuthorizationInterceptor(): Interceptor {
  return (next) => async (req) => {
    if (!isOperatorService(req.service.typeName)) return next(req);
    const procedure = `/${req.service.typeName}/${req.method.name}`;
    const policy = policyOf(procedure);
    if (!policy) throw unlistedMethod(procedure);
    if (policy.access === "public") return next(req);
    const principal = principalOf({ values: req.contextValues });
    if (policy.access === "signed_in") return next(req);
    if (policy.access === "agent" || policy.access === "install_token" || policy.access === "internal") throw unlistedMethod(procedure);
    if (principal.mustChangePassword) {
      throw new ConnectError("choose a new password first (AuthService.ChangePassword); the one you signed in with was temporary", Code.FailedPrecondition);
    }
    if (!roleAtLeast(principal.role, policy.access)) {
      throw new ConnectError(
        `${req.service.name}.${req.method.name} needs the ${policy.access} role or above; yours is ${principal.role}`,
        Code.PermissionDenied,
      );
    }
    if (policy.scope === "fleet" && isScoped(principal.scope)) {
      throw new ConnectError(`${req.service.name}.${req.method.name} acts on the whole panel; your access is limited to some servers`, Code.PermissionDenied);
    }
    return next(req);
  };
}
