import { readFileSync } from "node:fs";

/** This build's version (package.json): the panel's, and the agent's when it runs from source. */
export const productVersion: string = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")).version;

const majorMinor = (version: string) => {
  const m = /^(\d+)\.(\d+)\./.exec(version);
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
};

/**
 * Whether the panel works with an agent of `agentVersion`: the same major version and a minor
 * version at most one behind or ahead (so a fleet upgrades in stages, panel first or agents first).
 * Answers the refusal in words the agent logs, or undefined when compatible.
 */
export function agentIncompatibility(agentVersion: string, panelVersion: string = productVersion): string | undefined {
  const agent = majorMinor(agentVersion);
  const panel = majorMinor(panelVersion);
  if (!panel) return undefined;
  const window = `${panel.major}.${Math.max(0, panel.minor - 1)}.x to ${panel.major}.${panel.minor + 1}.x`;
  if (!agent) return `agent version "${agentVersion}" is not MAJOR.MINOR.PATCH; this panel (${panelVersion}) accepts agents ${window}`;
  const tooOld = agent.major < panel.major || (agent.major === panel.major && agent.minor < panel.minor - 1);
  if (tooOld) {
    return `agent ${agentVersion} is too old for this panel (${panelVersion} accepts agents ${window}); upgrade it with \`npx myosicam rollout start --version ${panelVersion}\` (or \`agent upgrade\` for one server) or re-run its install`;
  }
  const tooNew = agent.major > panel.major || agent.minor > panel.minor + 1;
  if (tooNew) return `agent ${agentVersion} is newer than this panel supports (${panelVersion} accepts agents ${window}); upgrade the panel first`;
  return undefined;
}
