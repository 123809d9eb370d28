#!/usr/bin/env node
// Entry point of `npx myosicam`: runs the TypeScript CLI through tsx on the Node the repo pins.
const [major] = process.versions.node.split(".").map(Number);
if (major < 22) {
  console.error(
    `myosicam: Node ${process.versions.node} is too old; run it as \`npx myosicam\` or \`npm start\` from the repository so the pinned Node 24 is used`,
  );
  process.exit(1);
}
const { register } = await import("tsx/esm/api");
register();
await import("../cli/main.ts");
