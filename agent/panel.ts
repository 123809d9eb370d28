import { createClient, type Transport } from "@connectrpc/connect";
import { AgentService } from "../gen/myosicam/agent/v1/agent_pb.js";
import { RegistrationService } from "../gen/myosicam/agent/v1/registration_pb.js";
import { createSignedTransport, createUnsignedTransport } from "../services/lib/hmac/signing-client.js";
import type { Logger } from "../services/lib/log.js";
import { pinCheck } from "../services/lib/pinned-certificate.js";
import { keepalive } from "./timing.js";

/** How the agent reaches the panel: its URL and, when pinned, the certificate and fingerprint. */
export interface PanelEndpoint {
  url: string;
  certificate?: string;
  pin?: string;
}

/**
 * Refuses `http://` unless MYOSICAM_ALLOW_INSECURE=1 (then every connection warns): the agent
 * token and everything the agent reports would cross the network in the clear.
 */
export function checkPanelUrl(raw: string, env: NodeJS.ProcessEnv = process.env): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`--panel must be a URL like https://panel.example.com:8443, got "${raw}"`);
  }
  if (url.protocol === "http:" && env.MYOSICAM_ALLOW_INSECURE !== "1") {
    throw new Error("refusing http:// — the panel must be reached over https (set MYOSICAM_ALLOW_INSECURE=1 only for a lab)");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error(`--panel must start with https://, got ${url.protocol}//`);
  return url;
}

function tlsOptions(endpoint: PanelEndpoint) {
  return {
    ...(endpoint.certificate ? { ca: endpoint.certificate } : {}),
    ...(endpoint.pin ? { checkServerIdentity: pinCheck(endpoint.pin) } : {}),
  };
}

/** The registration client: the one unsigned agent call (the install token authenticates it). */
export function registrationClient(endpoint: PanelEndpoint, log: Logger) {
  const insecure = new URL(endpoint.url).protocol === "http:";
  const transport = createUnsignedTransport({
    baseUrl: endpoint.url,
    httpVersion: insecure ? "1.1" : "2",
    ...tlsOptions(endpoint),
    defaultTimeoutMs: 30_000,
    interceptors: insecure
      ? [(next) => (req) => (log.warn({ panel: endpoint.url }, "connecting to the panel over plain http (MYOSICAM_ALLOW_INSECURE=1)"), next(req))]
      : [],
  });
  return createClient(RegistrationService, transport);
}

/**
 * How the agent's signed connection to the panel is timed: a deadline for each unary call, the
 * HTTP/2 keepalive, and how long a new connection may take up to the end of its TLS handshake (a
 * connection accepted and never answered is given up as an unanswered PING would be). The fleet
 * emulator connects with exactly these, so that a benchmarked herd gives up and comes back as
 * agents do.
 */
export function agentConnectionTiming(env: NodeJS.ProcessEnv = process.env) {
  const ping = keepalive(env);
  return { defaultTimeoutMs: 30_000, keepalive: ping, connectTimeoutMs: Math.max(5_000, ping.pingTimeoutMs) };
}

/** The signed AgentService client: caller id = server id, key = agent token. */
export function agentClient(endpoint: PanelEndpoint, credentials: { serverId: string; token: string }, log: Logger) {
  const insecure = new URL(endpoint.url).protocol === "http:";
  const transport = createSignedTransport({
    baseUrl: endpoint.url,
    credentials: { callerId: credentials.serverId, secret: credentials.token },
    httpVersion: insecure ? "1.1" : "2",
    ...agentConnectionTiming(),
    ...tlsOptions(endpoint),
  });
  if (!insecure) return createClient(AgentService, transport);
  const warned: Transport = {
    unary: (...args) => {
      log.warn({ panel: endpoint.url }, "connecting to the panel over plain http (MYOSICAM_ALLOW_INSECURE=1)");
      return transport.unary(...args);
    },
    stream: (...args) => {
      log.warn({ panel: endpoint.url }, "connecting to the panel over plain http (MYOSICAM_ALLOW_INSECURE=1)");
      return transport.stream(...args);
    },
  };
  return createClient(AgentService, warned);
}
