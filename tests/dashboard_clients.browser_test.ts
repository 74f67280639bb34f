/**
 * Finding and following a client in Chromium against the real herd (five servers over TCP in
 * this process): search by ID prefix, then the client panel with the record each server holds
 * (a stopped server's copy shown behind) and the path of the newest update; the trail on the
 * map; reaching a client with the keyboard alone; and per-server sparklines that move.
 */

import assert from "node:assert/strict";
import { browserTest, withSeedDashboard } from "./_helpers/browser.ts";
import { clientTime, exchange, waitFor } from "./_helpers/net.ts";
import type { ServedDashboard } from "../dashboard/app.ts";
// Test-only package: kept out of deno.json's runtime import map and deno.lock (tests/deno.lock).
// deno-lint-ignore no-import-prefix
import type { Page } from "npm:playwright-core@^1.56.0";

async function open(page: Page, d: ServedDashboard): Promise<void> {
  await page.goto(d.url + "/");
  await page.waitForSelector('[data-island="Clients"][data-hydrated="true"]', { timeout: 10_000 });
  await page.waitForFunction(
    () =>
      (globalThis as { __herdLive?: { status: { value: string } } }).__herdLive?.status.value ===
        "live",
    undefined,
    { timeout: 10_000 },
  );
}

browserTest(
  "follow a client: search, panel, path, trail, keyboard, sparklines",
  (browser, t) =>
    withSeedDashboard(async (h, d) => {
      const page = await browser.newPage({ width: 1280, height: 900 });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      for (const name of ["alpha", "bravo", "charlie"]) {
        await exchange(h.port("Jaquez"), `IAMAT kb-${name}.test +40.7-74.0 ${clientTime()}\n`);
      }
      await exchange(h.port("Smith"), `IAMAT follow.me +34.0689-118.4451 ${clientTime()}\n`);
      await open(page, d);

      await t.step("search, then the panel: every server's record and the path", async () => {
        await page.fill('[data-testid="client-search"]', "foll");
        await page.waitForFunction(
          () => document.querySelector('[data-testid="client-matches"]')?.textContent === "1 match",
          undefined,
          { timeout: 5000 },
        );
        assert.deepEqual(await page.locator("[data-client-row]").count(), 1);
        await page.click('[data-client-row="follow.me"]');
        await page.waitForSelector('[data-client-panel="follow.me"]', { timeout: 5000 });
        assert.match((await page.textContent('[data-testid="client-newest"]')) ?? "", /AT Smith /);
        await page.waitForFunction(
          () => document.querySelectorAll('[data-holding][data-state="current"]').length === 5,
          undefined,
          { timeout: 5000 },
        );
        const hops = await page.$$eval(
          "[data-hop]",
          (els) => els.map((e) => [e.getAttribute("data-hop"), e.getAttribute("data-from")]),
        );
        assert.deepEqual(hops.length, 5);
        assert.deepEqual(hops[0], ["Smith", ""]);
        const had = new Set(["Smith"]);
        for (const [server, from] of hops.slice(1)) {
          assert.ok(had.has(from!), `${server} from ${from}`);
          had.add(server!);
        }
        // The map follows it: zoomed in, the followed marker drawn.
        await page.waitForSelector('[data-followed="follow.me"]', { timeout: 5000 });
        assert.ok(Number(await page.getAttribute("svg.world", "data-zoom")) > 1, "map zoomed in");
      });

      await t.step("a stopped server shows behind; the trail shows the move", async () => {
        await h.herd.stopServer("Campbell");
        await exchange(h.port("Hill"), `IAMAT follow.me +34.10-118.30 ${clientTime(1000)}\n`);
        await page.waitForSelector('[data-holding="Campbell"][data-state="behind"]', {
          timeout: 5000,
        });
        await page.waitForFunction(
          () =>
            document.querySelector('[data-testid="client-newest"]')?.textContent?.includes(
              "AT Hill",
            ),
          undefined,
          { timeout: 5000 },
        );
        await page.waitForSelector('[data-testid="trail"]', { timeout: 5000 });
        assert.match(
          (await page.textContent('[data-testid="client-trail"]')) ?? "",
          /2 recent positions/,
        );
        await h.herd.startServer("Campbell");
        await page.waitForFunction(
          () => document.querySelectorAll('[data-holding][data-state="current"]').length === 5,
          undefined,
          { timeout: 15_000 },
        );
      });

      await t.step(
        "keyboard only: Tab to the search, arrows to a row, Enter follows it",
        async () => {
          await page.keyboard.press("Escape");
          await page.fill('[data-testid="client-search"]', "");
          await page.mouse.click(1, 1);
          await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
          let reached = false;
          for (let i = 0; i < 80 && !reached; i++) {
            await page.keyboard.press("Tab");
            reached = await page.evaluate(() =>
              document.activeElement?.getAttribute("data-testid") === "client-search"
            );
          }
          assert.ok(reached, "Tab never reached the client search");
          await page.keyboard.type("kb-");
          await page.waitForFunction(
            () =>
              document.querySelector('[data-testid="client-matches"]')?.textContent === "3 matches",
            undefined,
            { timeout: 5000 },
          );
          // In ID order: alpha, bravo, charlie.
          await page.keyboard.press("ArrowDown");
          await page.keyboard.press("ArrowDown");
          assert.deepEqual(
            await page.evaluate(() => document.activeElement?.getAttribute("data-client-row")),
            "kb-bravo.test",
          );
          await page.keyboard.press("Enter");
          await page.waitForSelector('[data-client-panel="kb-bravo.test"]', { timeout: 5000 });
          await page.keyboard.press("Escape");
          await page.waitForSelector('[data-testid="client-panel"]', {
            state: "detached",
            timeout: 5000,
          });
        },
      );

      await t.step("sparklines: one per server and series, moving with the updates", async () => {
        for (const s of ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"]) {
          assert.deepEqual(await page.locator(`[data-testid="spark-upd-${s}"]`).count(), 1);
          assert.deepEqual(await page.locator(`[data-testid="spark-conns-${s}"]`).count(), 1);
        }
        const before = await page.getAttribute('[data-testid="spark-upd-Hill"] polyline', "points");
        const ticks = () =>
          page.evaluate(() =>
            (globalThis as unknown as { __herdLive: { seriesTicks: { count: number } } }).__herdLive
              .seriesTicks.count
          );
        const ticksBefore = await ticks();
        // Updates for a few seconds: the lines move and Hill's peak is above zero.
        const end = Date.now() + 3000;
        let i = 0;
        while (Date.now() < end) {
          await exchange(h.port("Hill"), `IAMAT spark-${i++}.test +10+10 ${clientTime()}\n`);
          await new Promise((r) => setTimeout(r, 100));
        }
        await waitFor(
          async () =>
            (await page.getAttribute('[data-testid="spark-upd-Hill"] polyline', "points")) !==
              before,
          5000,
          "Hill's sparkline to move",
        );
        // The points came by the event stream (one a second), not only by the periodic refetch.
        assert.ok((await ticks()) >= ticksBefore + 2, "no live series messages");
        const label = (await page.getAttribute('[data-testid="spark-upd-Hill"]', "aria-label")) ??
          "";
        const peak = Number(/peak ([\d,]+)$/.exec(label)?.[1].replace(/,/g, ""));
        assert.ok(peak >= 2, `Hill's updates/s never above 1: ${label}`);
      });

      assert.deepEqual(errors, [], `page errors: ${errors.join("\n")}`);
    }),
);
