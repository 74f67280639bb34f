/**
 * The dashboard in a real browser (Debian's Chromium via playwright-core) against the real herd
 * (five servers over TCP in this process): a client reported over TCP appears on the map with
 * propagation from all five servers within 2 s; WHATSAT shows in the Places log; the console;
 * stopping and starting a server from the page; an event-stream reconnect that resumes with
 * Last-Event-ID and loses nothing; phone width and dark mode; and docs/dashboard.png.
 */

import assert from "node:assert/strict";
import { browserTest, withSeedDashboard } from "./_helpers/browser.ts";
import { clientTime, exchange, waitFor } from "./_helpers/net.ts";
import type { ServedDashboard } from "../dashboard/app.ts";
// Test-only package: kept out of deno.json's runtime import map and deno.lock (tests/deno.lock).
// deno-lint-ignore no-import-prefix
import type { Page } from "npm:playwright-core@^1.56.0";

/** docs/dashboard.png (and -phone) are rewritten only on request: a test run leaves the tree clean. */
const SHOTS = Deno.env.get("UPDATE_SCREENSHOT") === "1"
  ? new URL("../docs/", import.meta.url).pathname
  : `${Deno.makeTempDirSync()}/`;
const SCREENSHOT = `${SHOTS}dashboard.png`;
const PHONE_SCREENSHOT = `${SHOTS}dashboard-phone.png`;

interface LiveHandle {
  status: { value: string };
  lastId: { value: number };
  feed: { value: { id: number; kind: string; server: string; [k: string]: unknown }[] };
  hellos: { boot: string; lastId: number; resumeFrom: number | null }[];
}

async function openDashboard(page: Page, d: ServedDashboard): Promise<void> {
  await page.goto(d.url + "/");
  await page.waitForSelector('[data-island="WorldMap"][data-hydrated="true"]', { timeout: 10_000 });
  await page.waitForFunction(
    () =>
      (globalThis as unknown as { __herdLive?: LiveHandle }).__herdLive?.status.value === "live",
    undefined,
    { timeout: 10_000 },
  );
}

browserTest(
  "dashboard against the real herd",
  (browser, t) =>
    withSeedDashboard(async (h, dash) => {
      const page = await browser.newPage({ width: 1280, height: 800 });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(m.text());
      });
      await openDashboard(page, dash);

      await t.step("the first HTML already shows the herd, then goes live", async () => {
        const rows = await page.locator("[data-server-row]").count();
        assert.deepEqual(rows, 5);
        for (const [a, b] of [["Hill", "Jaquez"], ["Hill", "Smith"], ["Campbell", "Smith"]]) {
          assert.deepEqual(await page.getAttribute(`[data-link="${a}-${b}"]`, "data-state"), "up");
        }
        // The offline world map is drawn (no network but this dashboard).
        await page.waitForSelector('[data-testid="land"]', { timeout: 5000 });
      });

      await t.step("IAMAT over TCP: on the map, propagation from all five within 2 s", async () => {
        // Record pulses (they live 0.7 s) as they appear.
        await page.evaluate(() => {
          const g = globalThis as unknown as { __pulses: string[] };
          g.__pulses = [];
          new MutationObserver((muts) => {
            for (const m of muts) {
              for (const n of m.addedNodes) {
                const el = n as Element;
                if (el.classList?.contains("pulse")) {
                  g.__pulses.push(`${el.getAttribute("data-from")}>${el.getAttribute("data-to")}`);
                }
              }
            }
          }).observe(document.querySelector(".graph")!, { childList: true, subtree: true });
        });
        const client = "kiwi.browser.test";
        const started = Date.now();
        const at = await exchange(
          h.port("Smith"),
          `IAMAT ${client} +34.068930-118.445127 ${clientTime()}\n`,
        );
        assert.match(at, /^AT Smith /);
        await page.waitForSelector(`[data-client="${client}"]`, { timeout: 2000 });
        await page.waitForFunction(
          (c) => {
            const live = (globalThis as unknown as { __herdLive: LiveHandle }).__herdLive;
            const servers = new Set(
              live.feed.value
                .filter((e) =>
                  (e.kind === "location.accepted" || e.kind === "location.dropped") &&
                  (e.record as { client: string }).client === c
                )
                .map((e) => e.server),
            );
            const received = live.feed.value.filter((e) => e.kind === "propagation.received");
            return servers.size === 5 && received.length >= 4;
          },
          client,
          { timeout: Math.max(100, 2000 - (Date.now() - started)) },
        );
        const elapsed = Date.now() - started;
        assert.ok(elapsed <= 2000, `took ${elapsed} ms`);
        // Feed rows from every server, and pulses leaving Smith along its links.
        for (const s of ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"]) {
          assert.ok(
            await page.locator(`.feed-row[data-server="${s}"]`).count() > 0,
            `no feed row for ${s}`,
          );
        }
        await waitFor(
          () =>
            page.evaluate(() =>
              (globalThis as unknown as { __pulses: string[] }).__pulses.some((p) =>
                p.startsWith("Smith>")
              )
            ),
          2000,
          "a pulse from Smith",
        );
        // Hover shows the record.
        await page.hover(`[data-client="${client}"] .pin`);
        const tip = await page.textContent('[data-testid="map-tip"]');
        assert.match(tip ?? "", /AT Smith/);
        assert.match(tip ?? "", new RegExp(RegExp.escape(client)));
        // A move glides the dot to its new place.
        const before = await page.getAttribute(`[data-client="${client}"]`, "style");
        await exchange(h.port("Hill"), `IAMAT ${client} -33.8688+151.2093 ${clientTime(1000)}\n`);
        await waitFor(
          async () => (await page.getAttribute(`[data-client="${client}"]`, "style")) !== before,
          2000,
          "the dot to move",
        );
      });

      await t.step("event feed: filter by server and kind, pause and resume", async () => {
        await page.selectOption('[data-testid="feed-server"]', "Jaquez");
        await page.selectOption('[data-testid="feed-kind"]', "propagation");
        const kinds = await page.$$eval(
          ".feed-row",
          (rows) =>
            rows.map((r) => `${r.getAttribute("data-server")} ${r.getAttribute("data-kind")}`),
        );
        assert.ok(kinds.length > 0, "no rows for Jaquez/propagation");
        for (const k of kinds) {
          assert.match(k, /^Jaquez (propagation\.(sent|received)|sync\.done)$/);
        }
        await page.selectOption('[data-testid="feed-kind"]', "");
        await page.click('[data-testid="feed-pause"]');
        const frozen = await page.locator(".feed-row").count();
        await exchange(h.port("Jaquez"), `IAMAT paused.test +1+1 ${clientTime()}\n`);
        await page.waitForFunction(
          () => document.querySelector('[data-testid="feed-pause"]')?.textContent?.includes("new"),
          undefined,
          { timeout: 2000 },
        );
        assert.deepEqual(await page.locator(".feed-row").count(), frozen);
        await page.click('[data-testid="feed-pause"]');
        await page.waitForSelector(
          '.feed-row[data-kind="location.accepted"][data-server="Jaquez"]',
          {
            timeout: 2000,
          },
        );
        await page.selectOption('[data-testid="feed-server"]', "");
      });

      await t.step("console: WHATSAT over real TCP, and its Places row", async () => {
        await page.selectOption('[data-testid="console-server"]', "Campbell");
        await page.fill('[data-testid="console-line"]', "WHATSAT kiwi.browser.test 10 5");
        await page.click('[data-testid="console-send"]');
        const reply = page.locator('[data-testid="console-reply"]').first();
        await reply.waitFor({ timeout: 5000 });
        const text = (await reply.textContent()) ?? "";
        assert.match(text, /^AT Hill [+-]\d+\.\d{9} kiwi\.browser\.test -33\.8688\+151\.2093 /);
        assert.match(text, /"results"/);
        await page.waitForSelector('[data-places-row="kiwi.browser.test"]', { timeout: 2000 });
        const row = (await page.textContent('[data-places-row="kiwi.browser.test"]')) ?? "";
        assert.match(row, /Campbell/);
        assert.match(row, /offline/);
        // An invalid command shows the server's own "?" reply.
        await page.fill('[data-testid="console-line"]', "WHATSAT kiwi.browser.test 1- 5");
        await page.click('[data-testid="console-send"]');
        await page.waitForFunction(
          () =>
            document.querySelector('[data-testid="console-reply"]')?.textContent?.startsWith(
              "? WHATSAT",
            ),
          undefined,
          { timeout: 5000 },
        );
        // A line of NBSP is no blank line to the protocol (trim() took it for one, and the
        // console sent nothing): the server's "?" for it shows (review14).
        await page.fill('[data-testid="console-line"]', "\u00a0");
        await page.click('[data-testid="console-send"]');
        await page.waitForFunction(
          () =>
            document.querySelector('[data-testid="console-reply"]')?.textContent === "? \u00a0\n",
          undefined,
          { timeout: 5000 },
        );
      });

      await t.step(
        "stop a server from the page: its links go down; start: they recover",
        async () => {
          // Stop asks first: a cancelled Stop stops nothing.
          await page.click('button[data-action="stop"][data-server="Hill"]');
          await page.click('button[data-action="cancel-stop"]');
          await page.waitForTimeout(300);
          assert.deepEqual(h.herd.snapshot().servers.find((s) => s.name === "Hill")!.running, true);
          await page.click('button[data-action="stop"][data-server="Hill"]');
          await page.click('button[data-action="confirm-stop"][data-server="Hill"]');
          await page.waitForSelector('[data-server-row="Hill"][data-running="false"]', {
            timeout: 5000,
          });
          await page.waitForSelector('[data-link="Hill-Jaquez"][data-state="down"]', {
            timeout: 5000,
          });
          await page.waitForSelector('[data-link="Hill-Smith"][data-state="down"]', {
            timeout: 5000,
          });
          assert.deepEqual(
            h.herd.snapshot().servers.find((s) => s.name === "Hill")!.running,
            false,
          );
          await page.click('button[data-action="start"][data-server="Hill"]');
          await page.waitForSelector('[data-server-row="Hill"][data-running="true"]', {
            timeout: 5000,
          });
          await page.waitForSelector('[data-link="Hill-Jaquez"][data-state="up"]', {
            timeout: 15_000,
          });
          await page.waitForSelector('[data-link="Hill-Smith"][data-state="up"]', {
            timeout: 15_000,
          });
        },
      );

      await t.step(
        "event stream drops: the browser resumes with Last-Event-ID, nothing lost",
        async () => {
          const helloCount = await page.evaluate(() =>
            (globalThis as unknown as { __herdLive: LiveHandle }).__herdLive.hellos.length
          );
          dash.dashboard.hub.disconnectAll();
          // Events while the page is disconnected (EventSource waits ~1 s before reconnecting).
          for (let i = 0; i < 5; i++) {
            await exchange(
              h.port("Jaquez"),
              `IAMAT gap-${i}.test +${10 + i}.5-${20 + i}.25 ${clientTime()}\n`,
            );
          }
          await page.waitForFunction(
            (n) =>
              (globalThis as unknown as { __herdLive: LiveHandle }).__herdLive.hellos.length > n,
            helloCount,
            { timeout: 5000 },
          );
          const hello = await page.evaluate(() =>
            (globalThis as unknown as { __herdLive: LiveHandle }).__herdLive.hellos.at(-1)!
          );
          assert.ok(hello.resumeFrom !== null, "the reconnect did not resume (no Last-Event-ID)");
          for (let i = 0; i < 5; i++) {
            await page.waitForSelector(`[data-client="gap-${i}.test"]`, { timeout: 3000 });
          }
          // The feed's ids have no holes: every event reached the page exactly once.
          const ids = await page.evaluate(() =>
            (globalThis as unknown as { __herdLive: LiveHandle }).__herdLive.feed.value.map((e) =>
              e.id
            )
          );
          for (let i = 1; i < ids.length; i++) {
            assert.deepEqual(
              ids[i],
              ids[i - 1] + 1,
              `hole or repeat at ${ids[i - 1]} -> ${ids[i]}`,
            );
          }
          assert.deepEqual(ids.at(-1), dash.dashboard.hub.lastId);
        },
      );

      // After the resume check, whose feed has no holes: a merged burst leaves some.
      await t.step(
        "a burst: the stream merges it, the feed says so, the map gets every last report",
        async () => {
          // 300 reports in one write: ~1,500 location events in a tick or two, more than a page can
          // use, so the stream sends each client's best one (dashboard/coalesce.ts).
          const lines: string[] = [];
          const last: Record<string, string> = {};
          for (let n = 0; n < 100; n++) {
            for (let c = 0; c < 3; c++) {
              const time = clientTime(n);
              last[`burst${c}.test`] = time;
              lines.push(
                `IAMAT burst${c}.test +${10 + c}.${String(n).padStart(6, "0")}+20.000000 ${time}\n`,
              );
            }
          }
          const replies = await exchange(h.port("Hill"), lines.join(""), 5000);
          assert.deepEqual(replies.split("\n").filter((l) => l.startsWith("AT Hill ")).length, 300);
          await page.waitForSelector('[data-testid="feed-merged"]', { timeout: 3000 });
          await page.waitForFunction(
            (want) => {
              const live = (globalThis as unknown as {
                __herdLive: {
                  snapshot: { value: { records: { client: string; time: string }[] } };
                };
              }).__herdLive;
              return Object.entries(want).every(([c, time]) =>
                live.snapshot.value.records.some((r) => r.client === c && r.time === time)
              );
            },
            last,
            { timeout: 3000 },
          );
          for (const c of Object.keys(last)) {
            await page.waitForSelector(`[data-client="${c}"]`, { timeout: 2000 });
          }
        },
      );

      await t.step("screenshot, phone width and dark mode", async () => {
        // Some life for the picture: clients around the world and a few queries.
        const spots = [
          ["+51.5074-000.1278", "london"],
          ["+35.6762+139.6503", "tokyo"],
          ["-23.5505-046.6333", "saopaulo"],
          ["+40.7128-074.0060", "nyc"],
          ["+01.3521+103.8198", "singapore"],
          ["+64.1466-021.9426", "reykjavik"],
          ["-33.9249+018.4241", "capetown"],
          ["+19.4326-099.1332", "cdmx"],
        ];
        const names = ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"];
        for (const [i, [loc, name]] of spots.entries()) {
          await exchange(h.port(names[i % 5]), `IAMAT ${name}.example ${loc} ${clientTime()}\n`);
        }
        await exchange(h.port("Singleton"), "WHATSAT london.example 5 3\n");
        await exchange(h.port("Hill"), "WHATSAT tokyo.example 10 5\n");
        await page.waitForSelector('[data-places-row="tokyo.example"]', { timeout: 3000 });
        // As a person first sees it on a desktop screen: from the top (map, graph, servers and the
        // feed), the header over nothing.
        await page.setViewportSize({ width: 1440, height: 1000 });
        await page.evaluate(() => {
          globalThis.scrollTo(0, 0);
          // Clicking Stop/Start scrolled the servers table sideways: back to its start.
          for (const el of document.querySelectorAll(".table-scroll")) el.scrollLeft = 0;
        });
        await page.mouse.move(0, 0);
        await page.waitForTimeout(1200); // let the dots settle
        await page.screenshot({ path: SCREENSHOT });
        const png = await Deno.stat(SCREENSHOT);
        assert.ok(png.size > 20_000, "screenshot too small");
        await assertGraphClear(page);

        const phone = await browser.newPage({ width: 390, height: 844 });
        await openDashboard(phone, dash);
        const overflow = await phone.evaluate(() =>
          document.documentElement.scrollWidth - globalThis.innerWidth
        );
        assert.ok(overflow <= 1, `the page is ${overflow}px wider than a phone`);
        await phone.emulateMedia({ colorScheme: "dark" });
        const dark = await phone.evaluate(() => getComputedStyle(document.body).backgroundColor);
        await phone.emulateMedia({ colorScheme: "light" });
        const light = await phone.evaluate(() => getComputedStyle(document.body).backgroundColor);
        assert.ok(dark !== light, `dark ${dark} vs light ${light}`);
        await phone.waitForTimeout(1200);
        await phone.screenshot({ path: PHONE_SCREENSHOT });
        await phone.close();
      });

      assert.deepEqual(errors, [], `page errors: ${errors.join("\n")}`);
    }),
);

browserTest(
  "cut a link from the graph: updates go around it, restore catches up",
  (browser) =>
    withSeedDashboard(async (h, d) => {
      const page = await browser.newPage({ width: 1280, height: 800 });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await openDashboard(page, d);

      // The keyboard reaches the link's control (bounded number of Tabs), which names itself.
      const control = '[data-link-control="Hill-Jaquez"]';
      let reached = false;
      for (let i = 0; i < 80 && !reached; i++) {
        await page.keyboard.press("Tab");
        reached = await page.evaluate(
          (sel) => document.activeElement?.matches(sel) ?? false,
          control,
        );
      }
      assert.ok(reached, "Tab never reached the Hill–Jaquez link control");
      assert.deepEqual(await page.getAttribute(control, "aria-label"), "Cut link Hill–Jaquez");
      await page.keyboard.press("Enter");

      // Drawn cut: its own state, a dash pattern and words on the link, not colour alone.
      await page.waitForSelector('[data-link="Hill-Jaquez"][data-state="cut"]', { timeout: 5000 });
      const dash = await page.$eval(
        '[data-link="Hill-Jaquez"]',
        (el) => getComputedStyle(el).strokeDasharray,
      );
      assert.ok(dash !== "none" && dash !== "", `cut link not dashed (${dash})`);
      await page.waitForFunction(
        () =>
          document.querySelector('[data-edge-label="Hill-Jaquez"]')?.textContent?.includes(
            "cut at",
          ),
        undefined,
        { timeout: 5000 },
      );
      assert.deepEqual(await page.getAttribute(control, "aria-label"), "Restore link Hill–Jaquez");
      assert.deepEqual(
        h.herd.snapshot().servers[0].links.find((l) => l.peer === "Jaquez")!.up,
        false,
      );
      const cutAt = await page.evaluate(() =>
        (globalThis as unknown as { __herdLive: LiveHandle }).__herdLive.lastId.value
      );

      // An IAMAT at Hill reaches Jaquez the long way round (Smith, Singleton), never across.
      const client = "around.browser.test";
      const t = clientTime();
      assert.match(
        await exchange(h.port("Hill"), `IAMAT ${client} +48.85-002.35 ${t}\n`),
        /^AT Hill/,
      );
      await page.waitForFunction(
        (c) =>
          (globalThis as unknown as { __herdLive: LiveHandle }).__herdLive.feed.value.some((e) =>
            e.kind === "location.accepted" && e.server === "Jaquez" &&
            (e.record as { client: string }).client === c && e.from === "Singleton"
          ),
        client,
        { timeout: 5000 },
      );
      const crossed = await page.evaluate(
        (after) =>
          (globalThis as unknown as { __herdLive: LiveHandle }).__herdLive.feed.value.filter((e) =>
            e.id > after && e.kind === "propagation.sent" &&
            ((e.server === "Hill" && e.to === "Jaquez") ||
              (e.server === "Jaquez" && e.to === "Hill"))
          ).length,
        cutAt,
      );
      assert.deepEqual(crossed, 0, "records crossed the cut link");

      // Something only Hill holds, for the restore to carry: links in memory do not send what the
      // neighbour holds, so the record that went around is not sent again over the restored link.
      // With Hill–Smith cut too, an IAMAT at Hill stays at Hill.
      h.herd.setLink("Hill", "Smith", { cut: true });
      const stayed = "stayed.browser.test";
      assert.match(
        await exchange(h.port("Hill"), `IAMAT ${stayed} +48.85-002.35 ${clientTime()}\n`),
        /^AT Hill/,
      );

      // Restore from the same button: up again, and the catch-up over it is shown on the edge.
      await page.click(control);
      await page.waitForSelector('[data-link="Hill-Jaquez"][data-state="up"]', { timeout: 15_000 });
      await page.waitForSelector('[data-edge-label="Hill-Jaquez"] [data-catchup]', {
        timeout: 10_000,
      });
      await waitFor(
        () => h.herd.servers.get("Jaquez")!.store.get(stayed) !== undefined,
        10_000,
        "the record only Hill held, at Jaquez",
      );
      h.herd.setLink("Hill", "Smith", { cut: false });
      await page.waitForFunction(
        () =>
          (globalThis as unknown as { __herdLive: LiveHandle }).__herdLive.feed.value.some((e) =>
            e.kind === "sync.done" && e.server === "Hill" && e.peer === "Jaquez"
          ),
        undefined,
        { timeout: 10_000 },
      );
      assert.deepEqual(h.herd.servers.get("Jaquez")!.store.get(client)?.time, t);
      assert.match(
        (await page.textContent('[data-testid="link-message"]')) ?? "",
        new RegExp(RegExp.escape("restored")),
      );

      // At 1440 px the Places table shows every column whole (Status and Results were cut).
      await page.setViewportSize({ width: 1440, height: 900 });
      await exchange(h.port("Campbell"), `WHATSAT ${client} 10 5\n`, 30_000);
      await page.waitForSelector(`[data-places-row="${client}"]`, { timeout: 5000 });
      const places = await page.$eval(".places", (el) => ({
        scroll: el.scrollWidth,
        client: el.clientWidth,
      }));
      assert.ok(places.scroll <= places.client, `Places table cut: ${JSON.stringify(places)}`);
      assert.deepEqual(errors, [], `page errors: ${errors.join("\n")}`);
      await page.close();
    }),
);

browserTest(
  "phone: every control on-screen, tap targets of 24 px, readable graph",
  (browser) =>
    withSeedDashboard(async (herd, d) => {
      await exchange(herd.port("Hill"), `IAMAT phone.test +34.07-118.44 ${clientTime()}\n`);
      const phone = await browser.newPage({ width: 390, height: 844 });
      await openDashboard(phone, d);
      await phone.waitForSelector('[data-link-control="Hill-Jaquez"]');
      const overflow = await phone.evaluate(() =>
        document.documentElement.scrollWidth - globalThis.innerWidth
      );
      assert.ok(overflow <= 1, `the page is ${overflow}px wider than a phone`);
      // Every control (the Stop buttons above all) lies within the screen's width, at least 24 px.
      const controls = await phone.$$eval(
        "main button, main select, main input, main [tabindex='0']",
        (els) =>
          els.map((el) => {
            const r = el.getBoundingClientRect();
            const label = el.getAttribute("aria-label") ?? el.textContent?.trim().slice(0, 30) ??
              "";
            return {
              label: `${el.tagName} ${label}`,
              x: r.x,
              right: r.right,
              w: r.width,
              h: r.height,
            };
          }),
      );
      assert.ok(controls.length >= 20, `only ${controls.length} controls found`);
      for (const c of controls) {
        assert.ok(c.x >= 0 && c.right <= 390, `${c.label} is off-screen (${c.x}..${c.right})`);
        assert.ok(c.w >= 24 && c.h >= 24, `${c.label} is ${c.w}x${c.h} px`);
      }
      const stops = controls.filter((c) => c.label.startsWith("BUTTON Stop"));
      assert.deepEqual(stops.length, 5);
      // Graph labels at a readable size on the phone (they were ~6 px).
      const sizes = await phone.$$eval(
        ".node-name",
        (els) => els.map((el) => el.getBoundingClientRect().height),
      );
      for (const s of sizes) {
        assert.ok(s >= 11, `graph label ${s}px high`);
      }
      await assertGraphClear(phone);
      // Map dots: a 24 px tap target (their tips are the map's own, tested with it).
      const dot = '[data-client="phone.test"]';
      await phone.waitForSelector(dot);
      const hit = await phone.$eval(`${dot} .hit`, (el) => el.getBoundingClientRect().width);
      assert.ok(hit >= 24, `map tap target ${hit}px`);
      // A 6-digit event id leaves the header logo whole.
      await phone.evaluate(() => {
        (globalThis as unknown as { __herdLive: LiveHandle }).__herdLive.lastId.value = 123456;
      });
      await phone.waitForFunction(() =>
        document.querySelector(".live-badge")?.textContent?.includes("#123,456")
      );
      const logo = await phone.$eval(".brand > svg", (el) => el.getBoundingClientRect().width);
      assert.deepEqual(Math.round(logo), 26);
      // Stop asks before stopping, and the question's buttons are on-screen too.
      await phone.click('button[data-action="stop"][data-server="Smith"]');
      const confirm = await phone.$eval('button[data-action="confirm-stop"]', (el) => {
        const r = el.getBoundingClientRect();
        return { right: r.right, h: r.height };
      });
      assert.ok(confirm.right <= 390 && confirm.h >= 24, JSON.stringify(confirm));
      await phone.click('button[data-action="cancel-stop"]');
      assert.deepEqual(herd.herd.snapshot().servers.find((s) => s.name === "Smith")!.running, true);
      await phone.close();
    }),
);

/**
 * Nothing in the herd graph covers anything else: a node's rate line, a link's button, its RTT
 * and state labels, the other nodes' circles (the buttons sat on the rate lines at phone width,
 * RTT labels on the nodes above steep links). A node's own texts sit in its own circle.
 */
async function assertGraphClear(page: Page): Promise<void> {
  const boxes = await page.$$eval(
    ".graph .node-core, .graph .node-rate, .graph .edge-stat, .graph .edge-label, .edge-btn",
    (els) =>
      els.map((el) => {
        const r = el.getBoundingClientRect();
        const owner = el.closest("[data-server]")?.getAttribute("data-server") ?? "";
        const name = el.getAttribute("data-link-control") ?? el.getAttribute("data-edge-stats") ??
          el.getAttribute("data-edge-label") ?? owner;
        return {
          what: `${el.getAttribute("class")} ${name}`,
          owner,
          r: [r.left, r.top, r.right, r.bottom],
        };
      }).filter((b) => b.r[2] > b.r[0] && b.r[3] > b.r[1]),
  );
  assert.ok(boxes.length >= 5 + 6, `only ${boxes.length} graph boxes`);
  // Node circles are circles: a box near one's corner does not touch it.
  const circle = (b: (typeof boxes)[number]) => b.what.startsWith("node-core");
  const touches = (a: number[], b: number[], round: boolean) => {
    if (!round) {
      return Math.min(a[2], b[2]) - Math.max(a[0], b[0]) > 1 &&
        Math.min(a[3], b[3]) - Math.max(a[1], b[1]) > 1;
    }
    const [cx, cy, r] = [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, (b[2] - b[0]) / 2];
    const dx = cx - Math.max(a[0], Math.min(cx, a[2]));
    const dy = cy - Math.max(a[1], Math.min(cy, a[3]));
    return dx * dx + dy * dy < (r - 1) * (r - 1);
  };
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const [a, b] = circle(boxes[i]) ? [boxes[j], boxes[i]] : [boxes[i], boxes[j]];
      if (circle(a)) continue; // circles are laid out apart; their rings touch by design
      if (a.owner !== "" && a.owner === b.owner) continue;
      assert.ok(!touches(a.r, b.r, circle(b)), `${a.what} overlaps ${b.what}`);
    }
  }
}
