#!/usr/bin/env node
// Entry point of `npx myosicam-agent` from the repository: runs the TypeScript agent through tsx on
// the pinned Node. Installed agents run the bundled artifact from `npm run build:agent` instead.
const [major] = process.versions.node.split(".").map(Number);
if (major < 22) {
  console.error(`myosicam-agent: Node ${process.versions.node} is too old; run it as \`npx myosicam-agent\` from the repository`);
  process.exit(1);
}
const { register } = await import("tsx/esm/api");
register();
await import("../agent/main.ts");
