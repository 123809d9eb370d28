import { cp, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInstallToken } from "../../services/agents/install-tokens.js";
import { startOscamEmulator, type OscamEmulator } from "../oscam-emulator/emulator.js";
import { makeTempDir, runAgentCli, type CliProcess } from "./cli.js";
import type { PanelHost } from "./panel-host.js";

const fixtures = resolve(import.meta.dirname, "../fixtures/oscam");

/** WebIF credentials of each fixture's oscam.conf. */
const webifLogins: Record<string, { user: string; password: string }> = {
  main: { user: "admin", password: "dev-webif-Pw!main-7f3c" },
  backup: { user: "backupadmin", password: "dev-webif-Pw!backup-19ae" },
};

export interface FleetInstance {
  server: string;
  name: string;
  configDir: string;
  emulator: OscamEmulator;
  userFile(): Promise<Buffer>;
}

export interface AgentFleet {
  /** server name → its id on the panel */
  serverIds: Map<string, string>;
  instances: FleetInstance[];
  instance(server: string, name: string): FleetInstance;
  agents: CliProcess[];
  stop(): Promise<void>;
}

/**
 * Real agent processes, each with OScam instances copied from the fixtures (`main` or `backup`)
 * and a WebIF emulator per instance, registered with the panel and running until `stop`.
 */
export async function startAgentFleet(panel: PanelHost, servers: Record<string, Array<"main" | "backup">>): Promise<AgentFleet> {
  const dir = await makeTempDir("agent-fleet");
  const instances: FleetInstance[] = [];
  const agents: CliProcess[] = [];
  const serverIds = new Map<string, string>();
  for (const [server, fixtureNames] of Object.entries(servers)) {
    const dirs: string[] = [];
    for (const fixture of fixtureNames) {
      const configDir = join(dir.path, server, fixture);
      await cp(join(fixtures, fixture), configDir, { recursive: true });
      const emulator = await startOscamEmulator({ configDir, ...webifLogins[fixture]! });
      const conf = join(configDir, "oscam.conf");
      await writeFile(conf, (await readFile(conf, "utf8")).replace(/^(httpport\s*=\s*)\d+/m, `$1${emulator.port}`));
      instances.push({ server, name: fixture, configDir, emulator, userFile: () => readFile(join(configDir, "oscam.user")) });
      dirs.push(configDir);
    }
    const { token } = await createInstallToken(panel.db, { server, createdBy: "test" });
    const stateDir = join(dir.path, server, "state");
    const reg = runAgentCli(
      ["register", "--panel", panel.url, "--pin", panel.host.tls.fingerprint, "--token-stdin", "--oscam-dir", ...dirs, "--state-dir", stateDir],
      {},
      token,
    );
    if ((await reg.exited) !== 0) throw new Error(`agent register failed: ${reg.stderr()}`);
    serverIds.set(server, (await panel.db("servers").where({ name: server }).first()).id);
    agents.push(runAgentCli(["run", "--state-dir", stateDir, "--unit-dir", join(dir.path, "no-units")], {}));
  }
  for (const agent of agents) {
    await agent.waitForStderr(/"msg":"command stream open"/);
    await agent.waitForStderr(/"msg":"synced with the panel"/);
  }
  return {
    serverIds,
    instances,
    instance(server, name) {
      const found = instances.find((i) => i.server === server && i.name === name);
      if (!found) throw new Error(`no instance ${server}/${name}`);
      return found;
    },
    agents,
    async stop() {
      for (const agent of agents) if (agent.child.exitCode === null) agent.child.kill("SIGKILL");
      for (const i of instances) await i.emulator.stop();
      await dir.remove();
    },
  };
}
