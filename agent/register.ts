import { randomUUID } from "node:crypto";
import { ConnectError } from "@connectrpc/connect";
import type { Logger } from "../services/lib/log.js";
import { checkPanelUrl, registrationClient, type PanelEndpoint } from "./panel.js";
import { fetchPinnedCertificate, pinPattern } from "../services/lib/pinned-certificate.js";
import { machineKey, readState, sealToken, writeState, type AgentState } from "./state.js";
import { hostFacts } from "./system.js";
import { agentVersion } from "./version.js";

export interface RegisterOptions {
  panelUrl: string;
  installToken: string;
  /** `sha256:<hex>` of the panel's certificate (from `npm start` or `token create`). */
  pin?: string;
  stateDir: string;
  log: Logger;
  /** Config dirs to remember for discovery (kept from the previous state when not given). */
  oscamDirs?: string[];
}

/**
 * Registers this host with the panel: keeps (or creates) the agent id, consumes the install
 * token, and stores the answer with the agent token sealed by the machine key. Run again with a
 * new install token to rotate the agent token.
 */
export async function registerAgent(options: RegisterOptions): Promise<AgentState & { pendingApproval: boolean }> {
  const url = checkPanelUrl(options.panelUrl);
  if (!/^[0-9a-f]{64}$/.test(options.installToken))
    throw new Error("the install token is 64 lowercase hex characters, as `npx myosicam token create` printed it");
  if (options.pin !== undefined && !pinPattern.test(options.pin))
    throw new Error("--pin takes the fingerprint as printed by the panel: sha256:<64 hex characters>");
  const previous = await readState(options.stateDir).catch(() => undefined);
  const endpoint: PanelEndpoint = { url: url.origin };
  if (options.pin) {
    endpoint.pin = options.pin;
    endpoint.certificate = await fetchPinnedCertificate(url.origin, options.pin);
  }
  const facts = await hostFacts();
  const agentId = previous?.agentId ?? randomUUID();
  let res;
  try {
    res = await registrationClient(endpoint, options.log).register({ installToken: options.installToken, agentId, ...facts, agentVersion });
  } catch (err) {
    const e = ConnectError.from(err);
    throw new Error(`the panel refused the registration: ${e.rawMessage}`);
  }
  const state: AgentState = {
    agentId,
    panelUrl: url.origin,
    pin: endpoint.pin,
    certificate: endpoint.certificate,
    serverId: res.serverId,
    sealedToken: sealToken(await machineKey(options.stateDir), res.agentToken),
    heartbeatIntervalSeconds: res.heartbeatIntervalSeconds,
    oscamDirs: options.oscamDirs?.length ? options.oscamDirs : previous?.oscamDirs,
  };
  await writeState(options.stateDir, state);
  options.log.info({ serverId: res.serverId, panel: url.origin, pendingApproval: res.pendingApproval }, "registered with the panel");
  return { ...state, pendingApproval: res.pendingApproval };
}
