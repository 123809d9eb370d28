import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { AxeBuilder } from "@axe-core/playwright";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";

/** Debian's Chromium (`.ci/run` installs it); the tests never download a browser. */
export const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** Where the console tests save a screenshot of each page they visit. */
export const screenshotDir = resolve(import.meta.dirname, "../../test-output/console");

/**
 * Headless Chromium as this machine allows it: no sandbox (root), no GPU, and none of the
 * background connections a closed network refuses.
 */
export async function launchChromium(): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  process.stdout.write(`  (Chromium ${browser.version()} at ${chromiumPath})\n`);
  return browser;
}

/** A fresh browser profile for one operator, trusting the panel's self-signed certificate. */
export const newContext = (browser: Browser, width = 1280, height = 900): Promise<BrowserContext> =>
  browser.newContext({ ignoreHTTPSErrors: true, viewport: { width, height } });

export async function screenshot(page: Page, name: string): Promise<void> {
  await mkdir(screenshotDir, { recursive: true });
  await page.screenshot({ path: join(screenshotDir, `${name}.png`), fullPage: true });
}

/** axe-core's serious and critical findings on the page as it is now, one line each. */
export async function seriousAccessibilityProblems(page: Page): Promise<string[]> {
  const result = await new AxeBuilder({ page }).analyze();
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map(
      (v) =>
        `${v.id} (${v.impact}): ${v.help} — ${v.nodes
          .map((n) => n.target.join(" "))
          .slice(0, 3)
          .join(", ")}`,
    );
}

/** Signs in on the page it is on (the sign-in form), choosing `newPassword` when the console asks for one. */
export async function signIn(p: Page, email: string, password: string, newPassword?: string): Promise<void> {
  await p.getByLabel("E-mail").fill(email);
  await p.getByLabel("Password", { exact: true }).fill(password);
  await p.getByRole("button", { name: "Sign in" }).click();
  if (newPassword) {
    await p.getByRole("heading", { name: "Choose a new password" }).waitFor();
    await p.getByLabel("Current password").fill(password);
    await p.getByLabel("New password", { exact: true }).fill(newPassword);
    await p.getByLabel("New password again").fill(newPassword);
    await p.getByRole("button", { name: "Save password" }).click();
  }
}
