import { readFile, stat } from "node:fs/promises";
import { connect as tlsConnect } from "node:tls";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { RegistrationService } from "../gen/myosicam/agent/v1/registration_pb.js";
import { LicenseService } from "../gen/myosicam/license/v1/license_pb.js";
import { emptyConfigFile, makeTempDir, runCli, type CliProcess } from "./helpers/cli.js";
import { getHttp1, getHttp2 } from "./helpers/https.js";
import { upTestSettings } from "./helpers/up-process.js";

/** What `up --json` prints. */
interface UpReport {
  status: string;
  listeners: Record<"panel" | "admin", { url: string; services: string[] }>;
  inProcessServices: string[];
  tls: { fingerprint: string; source: string; certFile: string };
  dataDir: string;
  embeddedPostgresPort: number;
  installations: Record<"panel" | "admin", string>;
  generatedSettings: string[];
  firstLogin?: { email: string; password: string };
}

const test = suite("the whole stack started with `myosicam up` on a fresh data directory");

let dir: Awaited<ReturnType<typeof makeTempDir>>;
let up: CliProcess;
let report: UpReport;
let ca: string;
let configFile: string;

const env = () => ({ ...upTestSettings(dir.path, configFile) });

const validRegistration = {
  installToken: "a".repeat(64),
  agentId: "0b7d3c55-8f0e-4d53-9a7e-2f4f7a0c9b11",
  hostname: "oscam-01",
  ip: "192.0.2.10",
  os: "linux",
  osVersion: "Debian 12",
  arch: "x64",
  agentVersion: "0.1.0",
};

test.before(async () => {
  dir = await makeTempDir("stack");
  configFile = emptyConfigFile();
  up = runCli(["up", "--json"], env());
  report = await up.firstJson<UpReport>();
  ca = await readFile(report.tls.certFile, "utf8");
});

test.after(async () => {
  if (up.child.exitCode === null) up.child.kill("SIGKILL");
  await up.exited;
  await dir.remove();
});

test("it prints one JSON object with both URLs, the fingerprint and the data directory", () => {
  assert.is(report.status, "running");
  assert.match(report.listeners.panel.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.match(report.listeners.admin.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(report.listeners.panel.services, ["agents", "install", "panel"]);
  assert.equal(report.listeners.admin.services, ["admin"]);
  assert.equal(report.inProcessServices, ["crypto", "jobs", "licensing"], "the key holder, the job service and the license check are on no port");
  assert.equal(report.generatedSettings, ["PANEL_ENCRYPTION_KEY", "ADMIN_ENCRYPTION_KEY", "PANEL_CALLER_SECRET", "PANEL_LICENSE_KEY", "METRICS_TOKEN"]);
  assert.match(report.tls.fingerprint, /^sha256:[0-9a-f]{64}$/);
  assert.is(report.tls.source, "self-signed (new)");
  assert.is(report.dataDir, join(dir.path, "data"));
  assert.is(up.stdout().trim().split("\n").length, 1, "stdout holds exactly one line");
  assert.is(report.firstLogin?.email, "owner@localhost");
  assert.ok((report.firstLogin?.password.length ?? 0) >= 16, "a generated password of at least 16 characters");
});

test("the generated TLS key and the configuration file with the generated keys are owner-only", async () => {
  const key = await stat(join(dir.path, "data/tls/panel.key"));
  assert.is(key.mode & 0o777, 0o600);
  assert.is((await stat(configFile)).mode & 0o777, 0o600);
  const text = await readFile(configFile, "utf8");
  assert.match(text, /^PANEL_ENCRYPTION_KEY=[0-9a-f]{64}$/m);
  assert.match(text, /^ADMIN_ENCRYPTION_KEY=[0-9a-f]{64}$/m);
  assert.match(text, /^PANEL_CALLER_SECRET=[0-9a-f]{64}$/m);
  assert.match(text, /^PANEL_LICENSE_KEY=mlk_[A-Za-z0-9_-]{43}$/m);
});

test("the panel and admin trust each other with no manual step: the development license validates at start", async () => {
  // The first check runs as a job as soon as both listeners are up; wait for its log line.
  const line = JSON.parse(await up.waitForStderr(/^.*"msg":"license is valid".*$/m));
  assert.is(line.license, "active");
  const ready = JSON.parse((await getHttp2(`${report.listeners.panel.url}/readyz`, ca)).body);
  assert.is(ready.checks.license.state, "active");
  assert.equal(ready.checks.license.quotas, { maxServers: 10, maxInstances: 50 });
  assert.is(ready.checks.license.planName, "Development");
});

test("healthz answers over HTTP/2 and readyz reports the database and migrations", async () => {
  const health = await getHttp2(`${report.listeners.panel.url}/healthz`, ca);
  assert.is(health.status, 200);
  assert.equal(JSON.parse(health.body), { status: "ok", service: "panel" });
  const ready = await getHttp2(`${report.listeners.panel.url}/readyz`, ca);
  assert.is(ready.status, 200);
  assert.equal(JSON.parse(ready.body).checks.panelDatabase, { reachable: true, pendingMigrations: 0 });
  const adminReady = await getHttp2(`${report.listeners.admin.url}/readyz`, ca);
  assert.equal(JSON.parse(adminReady.body).checks.adminDatabase, { reachable: true, pendingMigrations: 0 });
});

test("GET /metrics answers Prometheus text with the generated bearer token only, on both listeners", async () => {
  const token = /^METRICS_TOKEN=(\S+)$/m.exec(await readFile(configFile, "utf8"))?.[1];
  assert.ok(token, "the first start generated METRICS_TOKEN");
  // A call first, so the RPC histogram has a series.
  await getHttp2(`${report.listeners.panel.url}/readyz`, ca);
  for (const listener of [report.listeners.panel.url, report.listeners.admin.url]) {
    const refused = await getHttp2(`${listener}/metrics`, ca);
    assert.is(refused.status, 401);
    assert.match(refused.body, /Bearer <METRICS_TOKEN>/);
    const wrong = await getHttp2(`${listener}/metrics`, ca, { authorization: `Bearer ${"0".repeat(64)}` });
    assert.is(wrong.status, 401);
    const scraped = await getHttp2(`${listener}/metrics`, ca, { authorization: `Bearer ${token}` });
    assert.is(scraped.status, 200, scraped.body);
    assert.match(String(scraped.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
    for (const name of [
      "myosicam_process_resident_memory_bytes",
      "myosicam_nodejs_eventloop_lag_seconds",
      "myosicam_open_streams",
      "myosicam_connected_agents",
      "myosicam_heartbeat_batch_size",
      'myosicam_db_pool_connections{database="',
      "myosicam_job_queue_depth",
    ]) {
      assert.ok(scraped.body.includes(name), `${name} is missing from ${listener}/metrics`);
    }
  }
  const panel = await getHttp2(`${report.listeners.panel.url}/metrics`, ca, { authorization: `Bearer ${token}` });
  assert.match(panel.body, /myosicam_command_queue_depth\{status="pending"\} \d+/);
  // Open files are counted (off the event loop); figures that walk every handle at each scrape are not served.
  const openFds = Number(/^myosicam_process_open_fds (\d+)$/m.exec(panel.body)?.[1]);
  assert.ok(openFds >= 10, `myosicam_process_open_fds counts the process's open files (${openFds})`);
  assert.not.match(panel.body, /myosicam_nodejs_active_(handles|resources)/);
  assert.match(panel.body, /myosicam_rpc_duration_seconds_count\{service="myosicam\.license\.v1\.LicenseService",method="ValidateLicense",code="ok"\} [1-9]/);
});

test("HTTP/1.1 clients are answered on the same port", async () => {
  const res = await getHttp1(`${report.listeners.panel.url}/readyz`, ca);
  assert.is(res.httpVersion, "1.1");
  assert.is(res.status, 200);
  assert.is(JSON.parse(res.body).status, "ready");
});

test("every response carries the security headers", async () => {
  const res = await getHttp1(`${report.listeners.admin.url}/healthz`, ca);
  assert.is(res.headers["x-content-type-options"], "nosniff");
  assert.match(String(res.headers["strict-transport-security"]), /max-age=/);
});

test("a TLS 1.2 client is refused", async () => {
  const url = new URL(report.listeners.panel.url);
  const outcome = await new Promise<string>((resolve) => {
    const socket = tlsConnect({ host: url.hostname, port: Number(url.port), ca, maxVersion: "TLSv1.2" });
    socket.once("secureConnect", () => {
      socket.destroy();
      resolve("connected");
    });
    socket.once("error", (err) => resolve(`refused: ${err.message}`));
  });
  assert.match(outcome, /^refused/);
});

test("a registration with an unknown install token is refused as Unauthenticated through a generated client", async () => {
  for (const httpVersion of ["2", "1.1"] as const) {
    const client = createClient(RegistrationService, createConnectTransport({ baseUrl: report.listeners.panel.url, httpVersion, nodeOptions: { ca } }));
    const err = await client.register(validRegistration).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    assert.ok(err, `HTTP/${httpVersion}: the call must fail`);
    assert.is(err.code, Code.Unauthenticated, `HTTP/${httpVersion}: ${err.message}`);
  }
});

test("an unsigned call to admin's LicenseService is refused as Unauthenticated, over gRPC too", async () => {
  const license = createClient(LicenseService, createGrpcTransport({ baseUrl: report.listeners.admin.url, nodeOptions: { ca } }));
  const err = await license.getPlanCatalog({}).catch((e: unknown) => ConnectError.from(e));
  assert.is((err as ConnectError).code, Code.Unauthenticated, "gRPC on the admin listener");
  assert.is((err as ConnectError).rawMessage, "request signature rejected");
});

test("a malformed request is refused with InvalidArgument naming the field, before any handler", async () => {
  const client = createClient(RegistrationService, createConnectTransport({ baseUrl: report.listeners.panel.url, httpVersion: "2", nodeOptions: { ca } }));
  const err = await client.register({ ...validRegistration, installToken: "not-hex" }).catch((e: unknown) => ConnectError.from(e));
  assert.is((err as ConnectError).code, Code.InvalidArgument);
  assert.match((err as ConnectError).rawMessage, /install_token/);
});

test("the caller's X-Request-Id comes back and is on the log line of that request", async () => {
  let echoed: string | null = null;
  const client = createClient(RegistrationService, createConnectTransport({ baseUrl: report.listeners.panel.url, httpVersion: "2", nodeOptions: { ca } }));
  await client
    .register(validRegistration, { headers: { "x-request-id": "req-stack-test-1" }, onHeader: (h) => (echoed = h.get("x-request-id")) })
    .catch((e: ConnectError) => (echoed ??= e.metadata.get("x-request-id")));
  assert.is(echoed, "req-stack-test-1");
  const line = JSON.parse(await up.waitForStderr(/^.*"rpc":"Register".*"requestId":"req-stack-test-1".*$/m));
  assert.is(line.svc, "agents");
  assert.is(line.rpc, "Register");
});

test("no log line holds the embedded database password or the install token", async () => {
  const password = (await readFile(join(dir.path, "data/postgres.password"), "utf8")).trim();
  assert.ok(password.length >= 32);
  assert.not.ok(up.stderr().includes(password), "database password in logs");
  assert.not.ok(up.stderr().includes(validRegistration.installToken), "install token in logs");
  assert.not.ok(up.stderr().includes(report.firstLogin!.password), "the owner's first password in logs");
  const credential = JSON.parse(await readFile(join(dir.path, "data/cli-credential.json"), "utf8")) as { secret: string };
  assert.not.ok(up.stderr().includes(credential.secret), "the local CLI's secret in logs");
  const text = await readFile(configFile, "utf8");
  for (const name of ["PANEL_ENCRYPTION_KEY", "ADMIN_ENCRYPTION_KEY", "PANEL_CALLER_SECRET", "PANEL_LICENSE_KEY"]) {
    const value = new RegExp(`^${name}=(\\S+)$`, "m").exec(text)![1]!;
    assert.not.ok(up.stderr().includes(value), `${name} in logs`);
  }
});

test("SIGTERM drains, stops PostgreSQL and exits 0; a second start keeps the data and the certificate", async () => {
  up.child.kill("SIGTERM");
  assert.is(await up.exited, 0, up.stderr().slice(-1500));
  const pidFile = await stat(join(dir.path, "data/postgres/postmaster.pid")).catch(() => undefined);
  assert.is(pidFile, undefined, "PostgreSQL stopped and removed its pid file");

  up = runCli(["up", "--json"], env());
  const again = await up.firstJson<UpReport>();
  assert.is(again.tls.fingerprint, report.tls.fingerprint, "same certificate");
  assert.is(again.tls.source, "self-signed (reused)");
  assert.equal(again.installations, report.installations, "same databases, same rows");
  const text = await readFile(configFile, "utf8");
  for (const name of ["PANEL_ENCRYPTION_KEY", "ADMIN_ENCRYPTION_KEY", "PANEL_CALLER_SECRET", "PANEL_LICENSE_KEY"]) {
    assert.is(text.match(new RegExp(`^${name}=`, "gm"))?.length, 1, `${name} is generated once`);
  }
  assert.equal(again.generatedSettings, []);
  assert.is(again.firstLogin, undefined, "the first login is printed once, on the first start only");
  const ready = await getHttp2(`${again.listeners.panel.url}/readyz`, ca);
  assert.is(ready.status, 200);
  up.child.kill("SIGINT");
  assert.is(await up.exited, 0);
});

test.run();
