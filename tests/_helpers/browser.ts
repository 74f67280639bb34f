/**
 * Browser tests' plumbing: Debian's Chromium driven by playwright-core, with a throwaway
 * profile. When /usr/bin/chromium (or $CHROMIUM_PATH) is missing the test is reported skipped,
 * loudly; under CI (env CI set) it fails instead, so a missing browser never passes silently.
 *
 * @module
 */

// Test-only package: kept out of deno.json's runtime import map and deno.lock (tests/deno.lock).
// deno-lint-ignore no-import-prefix
import { type BrowserContext, chromium, type Page } from "npm:playwright-core@^1.56.0";
import { buildIslands } from "../../dashboard/bundle.ts";
import { serveDashboard, type ServedDashboard } from "../../dashboard/app.ts";
import { startSeedHerd, type TestHerd } from "./net.ts";

/** The Chromium binary the tests drive. */
export const CHROMIUM = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";

/** Flags for a quiet, offline, sandbox-less headless Chromium. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** True when the Chromium binary exists. */
export function chromiumAvailable(): boolean {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
}

const inCI = Boolean(Deno.env.get("CI"));
let warned = false;

/** A running browser with its own temp profile (`await using` closes it). */
export interface TestBrowser extends AsyncDisposable {
  context: BrowserContext;
  newPage(viewport?: { width: number; height: number }): Promise<Page>;
  close(): Promise<void>;
}

/** Launches Chromium with a temp user-data-dir (removed on close). */
export async function launchBrowser(): Promise<TestBrowser> {
  const profile = await Deno.makeTempDir({ prefix: "herd-chromium-" });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
    timeout: 30_000,
  });
  const close = async () => {
    await context.close().catch(() => {});
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  };
  return {
    context,
    async newPage(viewport) {
      const page = await context.newPage();
      if (viewport) await page.setViewportSize(viewport);
      page.on("pageerror", (err) => console.error(`[page error] ${err.message}`));
      return page;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Registers a browser test. Without Chromium: fails under CI, else is ignored with a loud
 * warning. The test gets a fresh browser, closed afterwards.
 */
export function browserTest(
  name: string,
  fn: (browser: TestBrowser, t: Deno.TestContext) => Promise<void>,
  opts: { ignore?: boolean } = {},
): void {
  const available = chromiumAvailable();
  if (!available && !inCI && !warned) {
    warned = true;
    console.warn(
      `\n!!! BROWSER TESTS SKIPPED: no Chromium at ${CHROMIUM} (apt-get install chromium, ` +
        `or set CHROMIUM_PATH). Under CI they fail instead.\n`,
    );
  }
  Deno.test({
    name,
    ignore: opts.ignore || (!available && !inCI),
    sanitizeOps: false,
    sanitizeResources: false,
    async fn(t) {
      if (!available) throw new Error(`Chromium not found at ${CHROMIUM} (CI requires it)`);
      await using browser = await launchBrowser();
      await fn(browser, t);
    },
  });
}

/** Waits until `cond` is true (polling), or throws with `what` after `ms`. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** Builds the dashboard's islands when dashboard/static/build is missing (`deno task test` builds first). */
export async function ensureBuilt(): Promise<void> {
  try {
    await Deno.stat(new URL("../../dashboard/static/build/manifest.json", import.meta.url));
  } catch {
    await buildIslands();
  }
}

/** A seed herd in this process behind a dashboard, for one test; both closed afterwards. */
export async function withSeedDashboard(
  fn: (herd: TestHerd, d: ServedDashboard) => Promise<void>,
): Promise<void> {
  await ensureBuilt();
  const herd = await startSeedHerd();
  let d: ServedDashboard | undefined;
  try {
    d = await serveDashboard(herd.herd, { host: "127.0.0.1", port: 0, quiet: true });
    await fn(herd, d);
  } finally {
    await d?.close();
    await herd.close();
  }
}
