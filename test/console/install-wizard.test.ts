import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Browser, Page } from "playwright-core";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { Role } from "../../gen/myosicam/panel/v1/common_pb.js";
import { OperatorService } from "../../gen/myosicam/panel/v1/operator_pb.js";
import { ensureConsoleBuilt } from "../../web/build.js";
import { chromiumPath, launchChromium, newContext, screenshot, signIn } from "../helpers/browser.js";
import { makeTempDir } from "../helpers/cli.js";
import { ownerApi } from "../helpers/operator-api.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";
import { startSshd, type Sshd } from "../helpers/sshd.js";
import { buildAgent } from "../../bench/lib/build-agent.js";

const test = suite("the install wizard in a real Chromium against a real sshd: every step live, the host key shown, the new server's page at the end");

const repo = resolve(import.meta.dirname, "../..");
const noSystemdMarker = "/etc/myosicam-agent.no-systemd";
const root = process.getuid?.() === 0;
let panel: PanelHost;
let sshd: Sshd;
let browser: Browser;
let page: Page;
let dir: Awaited<ReturnType<typeof makeTempDir>>;

test.before(async () => {
  if (!root) return;
  if (!existsSync(chromiumPath)) throw new Error(`no Chromium at ${chromiumPath}: .ci/run installs Debian's chromium`);
  await ensureConsoleBuilt();
  dir = await makeTempDir("install-wizard");
  const artifacts = join(dir.path, "artifacts");
  buildAgent(artifacts);
  panel = await startPanelHost("install_wizard", { AGENT_HEARTBEAT_INTERVAL_SECONDS: "1", AGENT_ARTIFACT_DIR: artifacts });
  await panel.setLicense(10, 10);
  sshd = await startSshd(join(dir.path, "sshd"));
  // This test host has no systemd: the bootstrap runs the agent without a unit.
  await writeFile(noSystemdMarker, "");
  const created = await (await ownerApi(panel)).client(OperatorService).createOperator({ email: "installer@example.com", role: Role.ADMIN });
  browser = await launchChromium();
  const context = await newContext(browser);
  context.setDefaultTimeout(30_000);
  page = await context.newPage();
  await page.goto(`${panel.url}/install`);
  await signIn(page, "installer@example.com", created.oneTimePassword, "installer-Pw-0123456");
  await page.getByRole("heading", { name: "Install a server" }).waitFor();
});

test.after(async () => {
  if (!root) return;
  await browser?.close();
  try {
    execFileSync("sh", [join(repo, "deploy/uninstall.sh")], { stdio: "ignore" });
  } finally {
    await rm(noSystemdMarker, { force: true });
    await sshd?.stop();
    await panel?.stop();
    await dir?.remove();
  }
});

/** Fills the wizard's first two steps and starts the install. */
async function startInstall(name: string, user: string, credential: { key: string } | { password: string }) {
  await page.goto(`${panel.url}/install`);
  await page.getByLabel("Name in the panel").fill(name);
  await page.getByLabel("Host (name or address)").fill("127.0.0.1");
  await page.getByLabel("SSH port").fill(String(sshd.port));
  await page.getByLabel("SSH user").fill(user);
  if ("key" in credential) await page.getByLabel("Private key (OpenSSH or PEM, without a passphrase)").fill(credential.key);
  else {
    await page.getByLabel("a password").check();
    await page.getByLabel("Password", { exact: true }).fill(credential.password);
  }
  await page.getByRole("button", { name: "Save and continue" }).click();
  const next = page.getByRole("button", { name: "Install the agent" });
  await next.or(page.getByRole("alert")).first().waitFor();
  if (!(await next.isVisible())) throw new Error(`saving the server was refused: ${await page.getByRole("alert").innerText()}`);
  await next.click();
  await page.getByLabel("Install progress").first().waitFor();
}

test("key auth as root: the steps and output stream in, the pinned host key is shown, and the wizard ends on the new server's page", async () => {
  if (!root) {
    console.log("  skipped: the wizard's install runs the bootstrap on this machine, which needs root (CI runs as root)");
    return;
  }
  await startInstall("wizard-key", "root", { key: sshd.clientKey });
  await page.getByTestId("host-key").getByText(sshd.fingerprint).waitFor();
  await page.locator(".install-steps li", { hasText: "download agent" }).waitFor();
  await screenshot(page, "install-wizard-progress");
  await page.waitForURL(/\/servers\/[0-9a-f-]{36}$/, { timeout: 120_000 });
  await page.getByRole("heading", { name: "wizard-key", level: 1 }).waitFor();
  const server = await panel.db("servers").where({ name: "wizard-key" }).first();
  assert.ok(server.last_seen_at, "the agent heartbeats");
  assert.ok(page.url().endsWith(`/servers/${server.id}`));
  await screenshot(page, "install-wizard-done");
});

test("a wrong password fails at the connect step, and the wizard says so in the install's own words", async () => {
  if (!root) return;
  await startInstall("wizard-bad", "root", { password: "not-the-password" });
  const alert = page.getByRole("alert");
  await alert.waitFor();
  assert.match(await alert.innerText(), /The install stopped at “connect”: connect: authentication failed for root@127\.0\.0\.1:\d+ with the saved password/);
  await screenshot(page, "install-wizard-failed");
});

test.run();
