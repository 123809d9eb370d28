// `npm run build:agent`: bundles the agent into one self-contained JavaScript file per target in
// dist/agent/ (what the panel's gated download serves). The single executable with an embedded
// Node runtime comes with the SSH install work.
import { chmod, copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist/agent");
await mkdir(out, { recursive: true });
// The bundle is CommonJS; without this, the repository's "type": "module" would apply to it here.
await writeFile(join(out, "package.json"), '{ "type": "commonjs" }\n');
const first = join(out, "myosicam-agent-linux-x64");
await build({
  entryPoints: [join(root, "agent/main.ts")],
  bundle: true,
  platform: "node",
  target: "node22",
  format: "cjs",
  outfile: first,
  banner: { js: "#!/usr/bin/env node" },
  logLevel: "warning",
  legalComments: "none",
});
await chmod(first, 0o755);
// The bundle is plain JavaScript: the same file serves both architectures until the executable
// embeds a runtime.
await copyFile(first, join(out, "myosicam-agent-linux-arm64"));
const size = (await readFile(first)).length;
console.log(`built ${first} and linux-arm64 (${(size / 1024).toFixed(0)} KiB)`);
