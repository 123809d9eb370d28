// Set by `npm run build:agent` (esbuild `define`); a run from source has neither.
declare const MYOSICAM_AGENT_VERSION: string | undefined;
declare const MYOSICAM_RELEASE_PUBLIC_KEY: string | undefined;

/** The agent's version, reported at registration and in every heartbeat. */
export const agentVersion: string = typeof MYOSICAM_AGENT_VERSION === "string" ? MYOSICAM_AGENT_VERSION : "0.1.0";

/**
 * The release public key (PEM) this agent was built to trust: an upgrade is installed only when
 * its manifest carries this key's signature. Undefined for a build without one (and a run from
 * source), which therefore cannot be upgraded from the panel.
 */
export const releasePublicKey: string | undefined = typeof MYOSICAM_RELEASE_PUBLIC_KEY === "string" ? MYOSICAM_RELEASE_PUBLIC_KEY : undefined;
