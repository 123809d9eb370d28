/**
 * The console's first load (`npm run bench -- console`): the fleet overview of a panel with 10,000
 * servers, opened cold (a new browser profile, nothing cached, signed in) in the test Chromium.
 * Time to interactive: from navigation start until the summary cards hold numbers and the first
 * page of 100 servers is in the table, read in the page (performance.now()). Median and worst of 7
 * loads after one warm-up (target ≤ 1.5 s). Also the initial route's size: what index.html loads
 * (entry script, its static imports, styles), compressed with gzip -9 (target ≤ 400 KB).
 *
 * Bounded: the whole run stops itself after 5 minutes.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { createClient } from "@connectrpc/connect";
import { Role } from "../gen/myosicam/panel/v1/common_pb.js";
import { OperatorService } from "../gen/myosicam/panel/v1/operator_pb.js";
import { localCredentialFile, readCliCredential } from "../services/lib/cli-credential.js";
import { createSignedTransport } from "../services/lib/hmac/signing-client.js";
import { launchChromium, newContext, signIn } from "../test/helpers/browser.js";
import { consoleDist, ensureConsoleBuilt } from "../web/build.js";
import { startBenchPanel } from "./lib/panel.js";

const servers = 10_000;
const loads = 7;
const runDeadlineMs = 5 * 60_000;
const hardStop = setTimeout(() => {
  console.error(`console: did not finish within ${runDeadlineMs / 60_000} minutes; stopping`);
  process.exit(1);
}, runDeadlineMs);
hardStop.unref();

/** The initial route: index.html, the files it names, and what the entry script imports statically (Vite's modulepreload links). */
async function initialRouteBytes(): Promise<{ raw: number; gzip: number; files: string[] }> {
  const html = await readFile(join(consoleDist, "index.html"), "utf8");
  const named = [...html.matchAll(/(?:src|href)="\/(assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]!);
  const files = ["index.html", ...new Set(named)];
  let raw = 0;
  let gzip = 0;
  for (const f of files) {
    const bytes = await readFile(join(consoleDist, f));
    raw += bytes.length;
    gzip += gzipSync(bytes, { level: 9 }).length;
  }
  return { raw, gzip, files };
}

const built = await ensureConsoleBuilt();
const panel = await startBenchPanel();
const browser = await launchChromium();
try {
  await panel.db.raw(
    `insert into servers (id, name, status, approved, hostname, seen_ip, os, arch, agent_version, tags, last_seen_at, registered_at, created_by)
     select gen_random_uuid(), 'srv-' || lpad(n::text, 5, '0'), case when n % 50 = 0 then 'unreachable' when n % 97 = 0 then 'pending' else 'online' end,
            n % 97 <> 0, 'host-' || n, '10.' || (n / 65536) % 256 || '.' || (n / 256) % 256 || '.' || n % 256, 'linux', 'x64', '0.1.0',
            array['region-' || n % 5], now(), now(), 'bench'
       from generate_series(1, ?) as n`,
    [servers],
  );
  await panel.db.raw("analyze servers");
  const credential = (await readCliCredential(localCredentialFile(panel.dataDir)))!;
  const owner = createClient(
    OperatorService,
    createSignedTransport({ baseUrl: panel.url, credentials: () => ({ callerId: credential.clientId, secret: credential.secret }), ca: panel.ca }),
  );
  const created = await owner.createOperator({ email: "bench@example.com", role: Role.OWNER });
  const signInContext = await newContext(browser);
  const page = await signInContext.newPage();
  await page.goto(`${panel.url}/`);
  await signIn(page, "bench@example.com", created.oneTimePassword, "bench-operator-Pw-9");
  await page.locator("tr[data-server]").first().waitFor();
  const storageState = await signInContext.storageState();
  await signInContext.close();

  const timings: number[] = [];
  for (let i = 0; i <= loads; i++) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 }, storageState });
    const cold = await context.newPage();
    await cold.goto(`${panel.url}/`, { waitUntil: "commit" });
    // A function, not a string: the console's CSP forbids eval in the page.
    const ready = await cold.waitForFunction(
      () => {
        const page = globalThis as unknown as {
          document: { querySelectorAll(s: string): ArrayLike<{ textContent: string | null }> };
          performance: { now(): number };
        };
        const rows = page.document.querySelectorAll("tr[data-server]").length;
        const cards = Array.from(page.document.querySelectorAll(".card-value"));
        return rows === 100 && cards.length > 0 && cards.every((c) => c.textContent !== "…") ? page.performance.now() : false;
      },
      undefined,
      { polling: "raf", timeout: 30_000 },
    );
    const ms = Number(await ready.jsonValue());
    if (i > 0) timings.push(ms);
    await context.close();
  }
  timings.sort((a, b) => a - b);
  const bytes = await initialRouteBytes();
  const assets = (await readdir(join(consoleDist, "assets"))).length;
  const median = timings[Math.floor(timings.length / 2)]!;
  console.log(`console: overview of ${servers.toLocaleString()} servers, cold load in Chromium ${browser.version()} (${loads} loads after a warm-up)`);
  console.log(
    `  time to interactive   median ${median.toFixed(0)} ms, worst ${timings.at(-1)!.toFixed(0)} ms   (target ≤ 1500 ms: ${(median / 1500).toFixed(2)} of it)`,
  );
  console.log(
    `  initial route         ${(bytes.gzip / 1024).toFixed(0)} KB gzip (${(bytes.raw / 1024).toFixed(0)} KB raw) in ${bytes.files.length} files   (target ≤ 400 KB gzip: ${(bytes.gzip / 1024 / 400).toFixed(2)} of it)`,
  );
  console.log(`  bundle                ${assets} files in web/dist/assets${built.built ? `, built in ${(built.durationMs / 1000).toFixed(1)} s` : ""}`);
} finally {
  await browser.close();
  await panel.stop();
}
