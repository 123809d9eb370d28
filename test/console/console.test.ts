import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { Role } from "../../gen/myosicam/panel/v1/common_pb.js";
import { CommandKind } from "../../gen/myosicam/agent/v1/agent_pb.js";
import { CommandService, CommandStatus } from "../../gen/myosicam/panel/v1/command_pb.js";
import { FleetService } from "../../gen/myosicam/panel/v1/fleet_pb.js";
import { InstanceService } from "../../gen/myosicam/panel/v1/instance_pb.js";
import { OperatorService } from "../../gen/myosicam/panel/v1/operator_pb.js";
import { ServerService } from "../../gen/myosicam/panel/v1/server_pb.js";
import { livenessQueue } from "../../services/agents/alerts.js";
import { insertAlerts } from "../../services/agents/store.js";
import { ensureConsoleBuilt } from "../../web/build.js";
import { startAgentFleet, type AgentFleet } from "../helpers/agent-fleet.js";
import { chromiumPath, launchChromium, newContext, screenshot, seriousAccessibilityProblems, signIn } from "../helpers/browser.js";
import { eventually } from "../helpers/eventually.js";
import { ownerApi, type OperatorApi } from "../helpers/operator-api.js";
import { startPanelHost, type PanelHost } from "../helpers/panel-host.js";
import { writeRelease } from "../helpers/releases.js";
import { makeTempDir } from "../helpers/cli.js";
import { uploadRelease } from "../../services/agents/releases.js";
import { generateReleaseKeys } from "../../services/lib/releases/manifest.js";

const test = suite("the console in a real Chromium: sign-in, live fleet, server charts, bulk account changes with a failure, revert, audit, scopes");

const email = "ops@example.com";
const password = "console-test-Pw-1x9q";
/** Passwords of the fixtures' accounts: none may reach the browser unless revealed on purpose. */
const fixturePasswords = ["lr-7Hq2x9vT", "br-Kd81mQzp", "kv-p0Lm3Rt6", "md-Zx44bNe1"];

let panel: PanelHost;
let owner: OperatorApi;
let fleet: AgentFleet;
let browser: Browser;
let context: BrowserContext;
let page: Page;
/** The page of the rollout the agents test started (checked by axe too). */
let rolloutPath = "/agents";
/** Bodies of every unary answer the operator's browser received. */
const received: Buffer[] = [];

const serverId = (name: string) => fleet.serverIds.get(name)!;
/** The value of the overview card labelled exactly `label`. */
const cardValue = (p: Page, label: string) =>
  p
    .locator(".card")
    .filter({ has: p.locator(".card-label", { hasText: new RegExp(`^${label}$`) }) })
    .locator(".card-value")
    .innerText();
const go = async (path: string) => {
  await page.goto(panel.url + path);
};

test.before(async () => {
  if (!existsSync(chromiumPath)) throw new Error(`no Chromium at ${chromiumPath}: .ci/run installs Debian's chromium (test/system-packages.txt)`);
  await ensureConsoleBuilt();
  // Heartbeats every second; 8 s of silence make a server unreachable. Much less, and a CI machine
  // busy with Chromium delays a live agent's heartbeats enough for a false alarm (seen with 2 s).
  panel = await startPanelHost("console", { AGENT_HEARTBEAT_INTERVAL_SECONDS: "1", AGENT_MISSED_HEARTBEATS: "8" });
  await panel.setLicense(10, 10);
  owner = await ownerApi(panel);
  fleet = await startAgentFleet(panel, { "web-a": ["main"], "web-b": ["main", "backup"] });
  await eventually(
    () => panel.db("accounts").count<Array<{ n: string }>>({ n: "*" }),
    ([r]) => Number(r!.n) === 60,
    "the three instances' accounts synced",
  );
  browser = await launchChromium();
  context = await newContext(browser);
  context.setDefaultTimeout(15_000);
  page = await context.newPage();
  page.on("response", async (res) => {
    if (res.url().includes("/myosicam.panel.v1.") && res.headers()["content-type"] === "application/proto") {
      received.push(await res.body().catch(() => Buffer.alloc(0)));
    }
  });
});

test.after(async () => {
  await browser?.close();
  await fleet?.stop();
  await panel?.stop();
});

test("sign-in: a wrong password is refused in words; the one-time password leads to the password change and then to the page asked for", async () => {
  const created = await owner.client(OperatorService).createOperator({ email, role: Role.OWNER });
  await go("/accounts?state=active");
  await page.waitForURL(/\/login\?next=%2Faccounts%3Fstate%3Dactive$/);
  await screenshot(page, "sign-in");
  await signIn(page, email, "not-the-password");
  assert.is(await page.getByRole("alert").innerText(), "Wrong e-mail address or password");
  await signIn(page, email, created.oneTimePassword, password);
  await page.waitForURL(/\/accounts\?state=active$/);
  await page.getByRole("heading", { name: "Accounts" }).waitFor();
});

test("fleet overview: status counts, instances, and the server list; filters live in the URL", async () => {
  await go("/");
  await page.locator('tr[data-server="web-b"]').waitFor();
  await eventually(
    () => cardValue(page, "Online"),
    (t) => t === "2",
    "two servers online",
  );
  assert.is(await cardValue(page, "Instances running"), "0 / 3", "the emulated instances run no OScam process");
  assert.is(await page.locator('tr[data-server="web-b"] td.num').innerText(), "0 / 2");
  await screenshot(page, "fleet-overview");
  await page.getByLabel("Search").fill("web-a");
  await page.getByRole("button", { name: "Search", exact: true }).click();
  await page.waitForURL(/\?q=web-a$/);
  await eventually(
    () => page.locator("tbody tr[data-server]").count(),
    (n) => n === 1,
    "only web-a listed",
  );
  await page.reload();
  await page.locator('tr[data-server="web-a"]').waitFor();
  assert.is(await page.locator("tbody tr[data-server]").count(), 1, "the filter survives a reload");
  assert.is(await page.getByLabel("Search").inputValue(), "web-a");
});

test("server page: host facts, instances with WebIF and ports, CPU / memory / disk / load charts drawn; Re-run bootstrap shows the token once", async () => {
  await eventually(
    async () =>
      (
        await owner.client(InstanceService).getResourceHistory({
          serverId: serverId("web-a"),
          since: { seconds: BigInt(Math.floor(Date.now() / 1000) - 3600), nanos: 0 },
        })
      ).points.length,
    (n) => n >= 2,
    "two host readings",
  );
  await go(`/servers/${serverId("web-a")}`);
  await page.getByRole("heading", { name: "web-a", level: 1 }).waitFor();
  await page.locator('[data-instance="main"]').getByText("reachable").first().waitFor();
  await page.locator(".chart-box canvas").nth(3).waitFor();
  assert.is(await page.locator(".chart-box canvas").count(), 4, "CPU, memory, disk and load of the host");
  await page.getByRole("button", { name: "24 hours" }).click();
  await page.waitForURL(/range=24h/);
  await page.locator(".chart-box canvas").nth(3).waitFor();
  await screenshot(page, "server-page");

  await page.getByRole("button", { name: "Re-run bootstrap" }).click();
  await page.getByRole("button", { name: "Issue a new install token" }).click();
  const token = await page.getByLabel("Install token").inputValue();
  assert.match(token, /^[0-9a-f]{64}$/);
  assert.match(await page.getByRole("dialog").locator("textarea").inputValue(), /bootstrap\.sh/);
  assert.ok((await page.getByRole("dialog").innerText()).includes("The old agent token dies as soon as this one is used"));
  await screenshot(page, "rerun-bootstrap");
  await page.getByRole("button", { name: "Done" }).click();
  assert.not.ok(await page.getByLabel("Install token").isVisible(), "the token is gone once the dialog closes");
});

test("instance actions: Restart asks first (and Cancel sends nothing); confirmed, the card shows the agent's confirmed outcome, as the API stores it", async () => {
  const restarts = async () => (await owner.client(CommandService).listCommands({ serverId: serverId("web-a"), kind: CommandKind.RESTART })).commands;
  const before = (await restarts()).length;
  await go(`/servers/${serverId("web-a")}`);
  const card = page.locator('[data-instance="main"]');
  await card.getByRole("button", { name: "Restart" }).click();
  const dialog = page.getByRole("dialog");
  assert.match(await dialog.innerText(), /Restart main on web-a\?[\s\S]*Card sharing on this instance stops for a few seconds/);
  await dialog.getByRole("button", { name: "Cancel" }).click();
  assert.is((await restarts()).length, before, "a cancelled dialog sends nothing");

  await card.getByRole("button", { name: "Restart" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Restart", exact: true }).click();
  const notice = card.locator('p.notice[role="status"]');
  await card.locator("p.notice.ok, p.notice.error").waitFor();
  const [command] = await restarts();
  assert.is((await restarts()).length, before + 1, "one restart sent");
  assert.ok(command!.status === CommandStatus.SUCCEEDED || command!.status === CommandStatus.FAILED, CommandStatus[command!.status]);
  const shown = await notice.innerText();
  // Whatever the end state (this test host has no service manager for the emulated OScam), it is
  // the agent's own, not the console's guess.
  assert.match(shown, /^restart: /i);
  if (command!.status === CommandStatus.FAILED) assert.ok(shown.includes(command!.result), `${shown} ≠ ${command!.result}`);
  await screenshot(page, "instance-restart");
});

test("accounts: a bulk disable over two servers with one failing shows per-server results live; retry failed applies it; revert undoes all", async () => {
  // One failed reload: the agent puts the previous oscam.user back, and that reload succeeds.
  fleet.instance("web-b", "main").emulator.failNextReloads(1);
  await go("/accounts?q=livingroom&server=" + serverId("web-a"));
  await page.locator('tr[data-user="livingroom"]').first().waitFor();
  await page.getByRole("combobox", { name: /^Server/ }).selectOption("");
  await page.waitForURL((url) => !url.search.includes("server="));
  await eventually(
    () => page.locator('tr[data-user="livingroom"]').count(),
    (n) => n === 3,
    "livingroom on web-a/main, web-b/main and web-b/backup",
  );
  await page.getByLabel("Select every account on this page").check();
  await page.getByRole("button", { name: "Change selected…" }).click();
  await page.getByRole("button", { name: "Preview" }).click();
  await page.getByLabel("Planned changes").waitFor();
  await screenshot(page, "bulk-disable-preview");
  await page.getByRole("button", { name: "Send to the servers" }).click();
  await page.waitForURL(/\/change-sets\/[0-9a-f-]{36}$/);
  const counts = page.getByTestId("change-set-counts");
  await eventually(
    () => counts.innerText(),
    (t) => t.startsWith("2 applied · 0 unchanged · 1 failed · 0 waiting"),
    "two applied, one failed",
  );
  const failedRow = await page.locator('tr[data-instance="web-b/main"]').locator("td").allInnerTexts();
  assert.equal(failedRow.slice(1, 5), ["0", "0", "1", "0"], "web-b/main: 1 failed");
  const failedItem = await page.locator('tr[data-item="web-b/main/livingroom"]').innerText();
  assert.ok(/failed\s+reload_failed_rolled_back: .*HTTP 500/.test(failedItem), failedItem);
  assert.match(await page.locator('tr[data-item="web-a/main/livingroom"]').innerText(), /applied/);
  await screenshot(page, "change-set-failed");

  await page.getByRole("button", { name: "Retry failed" }).click();
  await eventually(
    () => counts.innerText(),
    (t) => t.startsWith("3 applied"),
    "the retry applied the failed one",
  );
  const firstChangeSet = page.url();

  await page.getByRole("button", { name: "Revert" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Revert" }).click();
  await page.waitForURL((url) => url.href !== firstChangeSet && /\/change-sets\//.test(url.pathname));
  await eventually(
    () => page.getByTestId("change-set-counts").innerText(),
    (t) => t.startsWith("3 applied"),
    "the revert applied on both servers",
  );
  // The panel's table follows the agents' next sync of the edited files.
  await eventually(
    () => panel.db("accounts").where({ username: "livingroom" }).select("enabled"),
    (rows) => rows.length === 3 && rows.every((r) => r.enabled === true),
    "livingroom enabled again everywhere",
  );

  await go("/accounts?q=livingroom");
  await page.locator('tr[data-user="livingroom"]').first().getByRole("button", { name: "livingroom" }).click();
  await page.getByRole("button", { name: "History" }).click();
  await page.locator(".history li").nth(1).waitFor();
  assert.match(await page.locator(".history").innerText(), /disabled/);
  await screenshot(page, "account-history");
  await page.keyboard.press("Escape");
});

test("accounts: CSV export of the filtered table, and an import previewed row by row before anything is sent", async () => {
  await go("/accounts?q=livingroom");
  await page.locator('tr[data-user="livingroom"]').first().waitFor();
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Export CSV" }).click()]);
  const csv = await readFile((await download.path())!, "utf8");
  const lines = csv.trim().split("\n");
  assert.ok(lines[0]!.startsWith("server,instance,user,enabled,state"), lines[0]);
  assert.is(lines.length, 4, "the header and the three livingroom accounts the filter selects");
  assert.not.ok(
    fixturePasswords.some((p) => csv.includes(p)),
    "no password in the export",
  );

  await page.getByRole("button", { name: "Import CSV" }).click();
  await page.getByLabel("or paste it").fill("server,instance,user,password,groups\nweb-a,main,from-csv,csv-Pw-1,1\nweb-a,main,livingroom,x,1\n");
  await page.getByRole("button", { name: "Preview" }).click();
  const preview = page.getByLabel("Import preview");
  await preview.waitFor();
  assert.match(await preview.innerText(), /1 valid row, 1 invalid row/);
  assert.match(await preview.innerText(), /line 3: web-a\/main livingroom — /);
  assert.ok(await page.getByRole("button", { name: "Import 1 row" }).isDisabled(), "not while invalid rows would be imported");
  await page.getByLabel("import the valid rows and skip the invalid ones").check();
  await screenshot(page, "accounts-import-preview");
  await page.getByRole("button", { name: "Import 1 row" }).click();
  await page.waitForURL(/\/change-sets\//);
  await eventually(
    () => page.getByTestId("change-set-counts").innerText(),
    (t) => t.startsWith("1 applied"),
    "the imported account created",
  );
});

test("fleet bulk action: a resync of both servers lists each server's result as it ends", async () => {
  await go("/");
  await page.locator('tr[data-server="web-b"]').waitFor();
  await page.getByLabel("Select every server on this page").check();
  await page.getByRole("button", { name: "Resync" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Resync" }).click();
  const results = page.getByLabel("Resync results");
  await results.waitFor();
  for (const server of ["web-a", "web-b"]) await results.locator(`tr[data-result="${server}"]`).getByText("succeeded").waitFor();
  await screenshot(page, "fleet-bulk-resync");
});

test("agents: versions running, the uploaded release, and a rollout whose canary fails halts naming it and why; cancel ends it", async () => {
  const releaseDir = await makeTempDir("console-release");
  try {
    const keys = generateReleaseKeys();
    const release = await writeRelease(releaseDir.path, { version: "0.1.1", executable: Buffer.from("#!/bin/sh\nexit 0\n"), keys });
    await uploadRelease(panel.db, release, keys.publicPem, "test");
  } finally {
    await releaseDir.remove();
  }
  await go("/agents");
  const versions = page.getByTestId("agent-versions");
  await versions.getByRole("row", { name: /0\.1\.0\s+2\s+2/ }).waitFor();
  await page.getByRole("cell", { name: "linux-x64" }).waitFor();
  await page.getByLabel("Each later batch (% of the servers)").fill("50");
  await page.getByRole("button", { name: "Start rollout" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Start rollout" }).click();
  // Either the rollout's page, or the API's refusal in words.
  await Promise.race([
    page.waitForURL(/\/rollouts\/[0-9a-f-]{36}$/),
    page
      .locator("main .notice.error")
      .waitFor()
      .then(async () => assert.unreachable(await page.locator("main .notice.error").innerText())),
  ]);
  rolloutPath = new URL(page.url()).pathname;
  // The agents run from source, built without a release key: the canary (web-a) refuses the upgrade.
  await page
    .getByTestId("rollout-reason")
    .getByText(/1 server failed \(more than 0 allowed\): web-a: not_upgradable: agent 0\.1\.0 was built without a release key/)
    .waitFor();
  assert.is(await page.locator(".page-head .badge").innerText(), "halted");
  await screenshot(page, "rollout-halted");
  await page.getByRole("button", { name: "Cancel" }).click();
  await page.locator(".page-head .badge", { hasText: "cancelled" }).waitFor();
  assert.match(await page.getByTestId("rollout-counts").innerText(), /0\/2 upgraded · 0 in progress · 0 waiting · 1 failed · 1 skipped/);
});

test("activity: the audit log shows what this test did, by whom; commands and change sets are listed", async () => {
  await go("/activity?tab=audit");
  await page.locator('tr[data-action="AccountService.CreateChangeSet"]').first().waitFor();
  assert.match(await page.locator('tr[data-action="AccountService.CreateChangeSet"]').first().innerText(), new RegExp(email.replace(".", "\\.")));
  assert.ok(await page.locator('tr[data-action="AccountService.RevertChangeSet"]').count());
  assert.ok(await page.locator('tr[data-action="ServerService.RerunBootstrap"]').count());
  await screenshot(page, "audit-log");
  await page.getByLabel("Action").fill("AccountService.RetryChangeSet");
  await page.getByRole("button", { name: "Filter" }).click();
  await eventually(
    () => page.locator("tbody tr[data-action]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-action"))),
    (actions) => actions.length === 1 && actions[0] === "AccountService.RetryChangeSet",
    "only the retry",
  );
  await go("/activity?tab=change-sets");
  await page
    .getByRole("link", { name: /disable/i })
    .first()
    .waitFor();
});

test("a scoped operator sees only the servers of their scope", async () => {
  await owner.client(ServerService).setServerTags({ serverIds: [serverId("web-a")], add: ["team-a"] });
  const created = await owner.client(OperatorService).createOperator({ email: "scoped@example.com", role: Role.OPERATOR, scope: { tags: ["team-a"] } });
  const scopedContext = await newContext(browser);
  scopedContext.setDefaultTimeout(15_000);
  const scoped = await scopedContext.newPage();
  await scoped.goto(panel.url + "/");
  await signIn(scoped, "scoped@example.com", created.oneTimePassword, "scoped-operator-Pw-22");
  await scoped.locator('tr[data-server="web-a"]').waitFor();
  assert.is(await scoped.locator('tr[data-server="web-b"]').count(), 0);
  assert.is(await cardValue(scoped, "Online"), "1");
  await scoped.goto(`${panel.url}/servers/${serverId("web-b")}`);
  await scoped.getByRole("alert").waitFor();
  assert.match(await scoped.getByRole("alert").innerText(), /not found|no server/i);
  await scoped.goto(panel.url + "/accounts");
  await scoped.locator("tr[data-user]").first().waitFor();
  const servers = await scoped.locator("tr[data-user]").evaluateAll((rows) => [...new Set(rows.map((r) => r.getAttribute("data-server")))]);
  assert.equal(servers, ["web-a"]);
  await screenshot(scoped, "scoped-operator");
  await scopedContext.close();
});

test("every page has no serious or critical accessibility problem (axe), at 1280 px and at 390 px", async () => {
  const pages = [
    "/",
    `/servers/${serverId("web-b")}`,
    "/accounts",
    "/install",
    "/activity?tab=commands",
    "/activity?tab=change-sets",
    "/activity?tab=alerts",
    "/activity?tab=audit",
    "/settings?tab=me",
    "/settings?tab=operators",
    "/settings?tab=api-clients",
    "/settings?tab=email",
    "/settings?tab=license",
    "/agents",
    rolloutPath,
  ];
  const problems: string[] = [];
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: 900 });
    for (const path of pages) {
      await go(path);
      await page.locator("main h1").first().waitFor();
      // The live stream keeps the network busy for good: wait for the page's own data instead.
      // A locator, not a waitForFunction string: the console's CSP (script-src 'self') refuses the
      // eval a string predicate needs (Chromium 156.0.8078.114 enforces it there).
      await page
        .locator("main", { hasNotText: /Loading/ })
        .first()
        .waitFor();
      for (const p of await seriousAccessibilityProblems(page)) problems.push(`${path} @${width}: ${p}`);
      const overflow = Number(await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"));
      if (overflow > 1) problems.push(`${path} @${width}: the page scrolls sideways by ${overflow} px`);
      if (width === 390) await screenshot(page, `narrow${path === "/" ? "-fleet" : path.replace(/[0-9a-f-]{36}/, "web-b").replace(/[/?=]/g, "-")}`);
    }
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  assert.equal(problems, []);
});

test("the overview follows the fleet live: a server whose agent stops turns unreachable without a reload", async () => {
  await go("/");
  const row = page.locator('tr[data-server="web-b"]');
  await row.getByText("online").waitFor();
  await page.evaluate("window.stillThisPage = true");
  fleet.agents[1]!.child.kill("SIGKILL");
  await eventually(
    async () => {
      await panel.host.enqueueJob("panel", livenessQueue);
      return panel.db("servers").where({ name: "web-b" }).first();
    },
    (s) => s.status === "unreachable",
    "web-b unreachable on the panel",
    30_000,
  );
  await row.getByText("unreachable").waitFor();
  assert.ok(await page.evaluate("window.stillThisPage === true"), "no reload happened");
  // The status counts are their own query, refetched on the same live event as the list: they may land a moment later.
  await eventually(
    () => cardValue(page, "Unreachable"),
    (n) => n === "1",
    "the Unreachable count",
  );
  await screenshot(page, "fleet-overview-unreachable");
});

test("the alert it raised is acknowledged from Activity, and the open-alert count in the menu follows", async () => {
  await go("/activity?tab=alerts");
  const row = page.locator("tbody tr", { hasText: "web-b" }).first();
  await row.waitFor();
  assert.match(await row.innerText(), /unreachable/);
  const open = await panel.db("alerts").whereNull("acknowledged_at").orderBy("id").pluck("message");
  assert.equal(
    open.map((m: string) => m.split(":")[0]),
    ["server web-b is unreachable"],
    "the open alerts: only web-b's",
  );
  await page.getByRole("link", { name: /Activity\s*1 open alerts/ }).waitFor();
  await row.getByRole("button", { name: "Acknowledge" }).click();
  await eventually(
    () => page.locator("tbody tr", { hasText: "web-b" }).count(),
    (n) => n === 0,
    "the acknowledged alert leaves the open ones",
  );
  await page.getByLabel("open only").uncheck();
  assert.match(await page.locator("tbody tr", { hasText: "web-b" }).first().innerText(), new RegExp(`${email.replace(".", "\\.")}, `));
  await page.getByRole("link", { name: "Activity", exact: true }).waitFor();
});

test("an alert raised while a page loads, before its live stream is open, is counted all the same", async () => {
  // The live stream is held back until the page has fetched the open alerts (none), and the alert
  // is raised in between: the stream, opened after it, starts past its event. Another watcher (an
  // operator's console elsewhere) keeps the panel's reading of events current. No deadline: a
  // stream's deadline timer outlives the stream and would keep this process alive after the tests.
  const otherWatcher = new AbortController();
  const seenElsewhere = (async () => {
    for await (const res of owner.client(FleetService).watchEvents({ after: 0n }, { signal: otherWatcher.signal, timeoutMs: 0 })) {
      if (res.events.some((e) => e.change.case === "alert" && e.change.value.message.endsWith("raised by the test"))) return;
    }
  })();
  let openStream!: () => void;
  const streamHeld = new Promise<void>((resolve) => (openStream = resolve));
  let streamAsked = false;
  await page.route("**/myosicam.panel.v1.FleetService/WatchEvents", async (route) => {
    streamAsked = true;
    await streamHeld;
    await route.continue();
  });
  try {
    const countFetched = page.waitForResponse((r) => r.url().endsWith("AlertService/ListAlerts"));
    await go("/agents");
    await countFetched;
    await eventually(async () => streamAsked, Boolean, "the page asking for its live stream (held back)");
    await page.getByRole("link", { name: "Activity", exact: true }).waitFor();
    await insertAlerts(panel.db, [{ serverId: serverId("web-a"), kind: "server_unreachable", message: "server web-a is unreachable: raised by the test" }]);
    await seenElsewhere;
    openStream();
    await page.getByRole("link", { name: /Activity\s*1 open alerts/ }).waitFor();
  } finally {
    otherWatcher.abort();
    await seenElsewhere.catch(() => {});
    openStream();
    await page.unroute("**/myosicam.panel.v1.FleetService/WatchEvents");
    await panel.db("alerts").whereNull("acknowledged_at").update({ acknowledged_at: panel.db.fn.now(), acknowledged_by: "test" });
  }
});

test("settings: an API client's secret is shown once, with its id; after a reload only its name and last use remain", async () => {
  await go("/settings?tab=api-clients");
  await page.getByRole("button", { name: "Create API client" }).click();
  await page.getByRole("dialog").getByLabel("Name").fill("billing-sync");
  await page.getByRole("dialog").getByRole("button", { name: "Create" }).click();
  const secret = page.getByLabel(/^Secret of billing-sync \(client id ac_[0-9a-f]{24}\)$/);
  await secret.waitFor();
  assert.match(await secret.inputValue(), /^[0-9a-f]{64}$/);
  await screenshot(page, "settings-api-client-created");
  await page.reload();
  await page.getByRole("cell", { name: /billing-sync/ }).waitFor();
  assert.is(await page.locator(".shown-once").count(), 0, "the secret is gone after a reload");
});

test("the browser never received a password it did not display", () => {
  const all = Buffer.concat(received).toString("latin1");
  for (const p of [...fixturePasswords, password]) assert.not.ok(all.includes(p), `${p} reached the browser`);
  assert.ok(received.length > 20, "answers were captured");
});

test("a session that ends while a page is open brings the operator back to sign-in, then to the same page", async () => {
  await go("/activity?tab=commands");
  await page.getByRole("heading", { name: "Activity" }).waitFor();
  // Disabling an operator ends every session of theirs at once; enabled again, they may sign in.
  const operators = owner.client(OperatorService);
  const ops = (await operators.listOperators({})).operators.find((o) => o.email === email)!;
  await operators.setOperatorDisabled({ operatorId: ops.id, disabled: true });
  await operators.setOperatorDisabled({ operatorId: ops.id, disabled: false });
  // The next call of the page notices: the one the click makes, or one the page was making anyway
  // (a refresh after a live event) if that comes first and takes the page to sign-in before the click.
  await page
    .getByRole("link", { name: "Accounts" })
    .click({ timeout: 5_000 })
    .catch(() => {});
  await page.waitForURL(/\/login\?expired=1&next=(%2Faccounts|%2Factivity%3Ftab%3Dcommands)$/);
  const next = new URL(page.url()).searchParams.get("next")!;
  // The sign-in page says why, once it has rendered its notice (another status may come first).
  await page
    .getByRole("status")
    .filter({ hasText: /session ended/ })
    .first()
    .waitFor({ timeout: 10_000 });
  await signIn(page, email, password);
  await page.waitForURL((url) => url.pathname + url.search === next);
});

test("sign out ends the session; too many wrong passwords are refused with the rate-limit message", async () => {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/login$/);
  await go("/");
  await page.waitForURL(/\/login\?next=%2F$/);
  const answers: string[] = [];
  for (let i = 0; i < 6; i++) {
    const answered = page.waitForResponse((r) => r.url().endsWith("AuthService/Login"));
    await signIn(page, "nobody@example.com", `wrong-${i}`);
    await answered;
    await page.getByRole("button", { name: "Sign in" }).waitFor();
    answers.push(await page.getByRole("alert").innerText());
  }
  assert.equal(answers.slice(-1), ["Too many failed sign-ins; wait a minute and try again"], answers.join("\n"));
  await screenshot(page, "sign-in-rate-limited");
});

test.run();
