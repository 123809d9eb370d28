/** The agent's version, reported at registration and in every heartbeat. */
export const agentVersion = "0.1.0";
