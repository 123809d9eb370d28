import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");

/** Builds the agent's single executable into `out` as `npm run build:agent` does (a few seconds). */
export function buildAgent(out: string, options: { version?: string; releaseKeyFile?: string; signKeyFile?: string; execArgv?: string } = {}): string {
  const args = ["--import", "tsx", join(repo, "scripts/build-agent.mjs"), "--out", out];
  if (options.version) args.push("--version", options.version);
  if (options.releaseKeyFile) args.push("--release-key", options.releaseKeyFile);
  if (options.signKeyFile) args.push("--sign-key", options.signKeyFile);
  if (options.execArgv !== undefined) args.push("--exec-argv", options.execArgv);
  return execFileSync(process.execPath, args, { cwd: repo, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}
