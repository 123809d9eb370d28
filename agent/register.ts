import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { retryDelayMs } from "../services/lib/backoff.js";
import type { Logger } from "../services/lib/log.js";
import { checkPanelUrl, registrationClient, type PanelEndpoint } from "./panel.js";
import { fetchPinnedCertificate, pinPattern } from "../services/lib/pinned-certificate.js";
import { machineKey, readState, sealToken, writeState, type AgentState } from "./state.js";
import { hostFacts } from "./system.js";
import { agentVersion } from "./version.js";

/** Attempts at registering before giving up (at most about 30 s of waiting between them). */
const registerAttempts = 6;
/** Failures where the panel may not have answered (or not have been reached): worth asking again. */
const transientCodes = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Aborted, Code.Unknown]);

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
  // The id is kept before asking: when an answer is lost, the retry (here, or a re-run of the
  // bootstrap) asks with the same id, and the panel answers it again instead of refusing a used token.
  if (!previous) await writeState(options.stateDir, { agentId, panelUrl: url.origin, pin: endpoint.pin, certificate: endpoint.certificate });
  const client = registrationClient(endpoint, options.log);
  let res;
  for (let attempt = 1; ; attempt++) {
    try {
      res = await client.register({ installToken: options.installToken, agentId, ...facts, agentVersion });
      break;
    } catch (err) {
      const e = ConnectError.from(err);
      if (!transientCodes.has(e.code) || attempt >= registerAttempts) {
        throw new Error(`the panel refused the registration: ${e.rawMessage}${attempt > 1 ? ` (after ${attempt} attempts)` : ""}`);
      }
      const waitMs = retryDelayMs(e, attempt, 1000, 15_000);
      options.log.warn({ attempt, code: Code[e.code], reason: e.rawMessage, retryInMs: waitMs }, "registration not answered; retrying");
      await sleep(waitMs);
    }
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
