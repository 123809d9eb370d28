import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { Role } from "../../gen/myosicam/panel/v1/common_pb.js";
import { ServerService } from "../../gen/myosicam/panel/v1/server_pb.js";
import { makeTempDir } from "../helpers/cli.js";
import { apiClientWith, ownerApi } from "../helpers/operator-api.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";

const run = promisify(execFile);
const repo = resolve(import.meta.dirname, "../..");
const test = suite("docs/api.md's worked examples: TypeScript, openssl + curl, and Python over gRPC, each signing as an API client");

let panel: PanelHost;
let dir: Awaited<ReturnType<typeof makeTempDir>>;
let client: { clientId: string; secret: string };
let caFile: string;

test.before(async () => {
  dir = await makeTempDir("examples");
  panel = await startPanelHost("examples");
  caFile = join(dir.path, "panel.crt");
  await writeFile(caFile, panel.ca);
  const owner = await ownerApi(panel);
  await owner.client(ServerService).addServer({ name: "example-1", tags: ["docs"] });
  client = await apiClientWith(panel, "docs-integrator", Role.VIEWER);
});
test.after(async () => {
  await panel.stop();
  await dir.remove();
});

const exampleEnv = () => ({ ...process.env, MYOSICAM_CLIENT_ID: client.clientId, MYOSICAM_SECRET: client.secret, MYOSICAM_CA: caFile });

test("the TypeScript example lists the fleet and opens the event stream with its signing interceptor", async () => {
  const { stdout } = await run(process.execPath, ["--import", "tsx", join(repo, "docs/examples/api-client.ts")], {
    env: { ...exampleEnv(), MYOSICAM_URL: panel.url },
    timeout: 60_000,
  });
  const lines = stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines[0], { whoami: "docs-integrator" });
  assert.equal(lines[1], { total: 1, online: 0 });
  assert.equal(lines[2], { name: "example-1", status: "NEW" });
  assert.is(lines[3]!.watching, true);
});

test("the openssl + curl signer calls the operator API (Connect, JSON)", async () => {
  const { stdout } = await run(
    "sh",
    [join(repo, "docs/examples/sign-request.sh"), "/myosicam.panel.v1.ServerService/ListServers", '{"filter":{"tags":["docs"]}}'],
    {
      env: { ...process.env, MYOSICAM_URL: panel.url, MYOSICAM_CALLER_ID: client.clientId, MYOSICAM_SECRET: client.secret, MYOSICAM_CACERT: caFile },
      timeout: 60_000,
    },
  );
  const body = JSON.parse(stdout) as { servers: Array<{ name: string }>; total: number };
  assert.equal(
    body.servers.map((s) => s.name),
    ["example-1"],
  );
  assert.is(body.total, 1);
});

test("the Python example, generated with Debian's protoc, signs over the gRPC-framed body and lists the fleet", async () => {
  const gen = join(dir.path, "python-gen");
  await run("sh", [join(repo, "docs/examples/python/generate.sh"), gen]);
  const target = new URL(panel.url).host;
  const { stdout } = await run("/usr/bin/python3", [join(repo, "docs/examples/python/list_servers.py")], {
    env: { ...exampleEnv(), MYOSICAM_TARGET: target, MYOSICAM_GENERATED: gen },
    timeout: 60_000,
  });
  const lines = stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines, [{ whoami: "docs-integrator" }, { name: "example-1", status: "SERVER_STATUS_NEW" }]);
  // A wrong secret is refused, and says so. (Not spawnSync: the panel answers from this process.)
  const refused = await run("/usr/bin/python3", [join(repo, "docs/examples/python/list_servers.py")], {
    env: { ...exampleEnv(), MYOSICAM_TARGET: target, MYOSICAM_GENERATED: gen, MYOSICAM_SECRET: "0".repeat(64) },
  }).then(
    () => ({ code: 0, stderr: "" }),
    (err: { code: number; stderr: string }) => err,
  );
  assert.is(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /^UNAUTHENTICATED: request signature rejected/, refused.stderr);
});

test.run();
