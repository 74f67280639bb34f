/**
 * The dashboard with a million clients, in Chromium: a two-server herd in this process is loaded
 * with 1,000,000 distinct clients over TCP by bench/bulk.ts (its own process, so building and
 * writing the lines does not share this event loop); then the page's totals are exact, the map
 * shows them as counted groups, and the page stays interactive (zoom, search) while it does.
 * Prints the measured times (navigation to the first clusters drawn; a zoom's new clusters).
 * The load takes about a minute on an idle 2-core machine; the bounds (25 min for the load, 10
 * for the flood to finish) allow for one shared with many other jobs (at a load average of 30,
 * 900,000 clients took 10 minutes). HERD_SCALE_CLIENTS=N loads N instead (a quick local run).
 */

import assert from "node:assert/strict";
import { browserTest, ensureBuilt } from "./_helpers/browser.ts";
import { freePorts, waitFor } from "./_helpers/net.ts";
import { serveDashboard, type ServedDashboard } from "../dashboard/app.ts";
import { parseConfig } from "../servers/config.ts";
import { Herd } from "../servers/herd.ts";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { createOfflineProvider } from "../servers/places/offline.ts";
import type { BulkResult } from "../bench/bulk.ts";

const COUNT = Number(Deno.env.get("HERD_SCALE_CLIENTS") ?? 1_000_000);
const SHOWN = new Intl.NumberFormat("en-US").format(COUNT);

/** bench/bulk.ts in its own process against `ports`; bounded by its own timeout and ours. */
async function bulk(ports: number[], count: number): Promise<BulkResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      new URL("../bench/bulk.ts", import.meta.url).pathname,
      "--ports",
      ports.join(","),
      "--count",
      String(count),
      "--connections-per-port",
      "2",
      // Well under the server's 1,024 unwritten replies per connection (see bulk.ts).
      "--window",
      "256",
      "--timeout-ms",
      "1500000",
    ],
    stdout: "piped",
    stderr: "inherit",
    signal: AbortSignal.timeout(1_560_000),
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.ok(out.success, `bulk.ts failed: ${text}`);
  return JSON.parse(text.split("\n").at(-1)!);
}

browserTest(
  "dashboard with 1,000,000 clients: exact totals, groups, interactive",
  async (browser, t) => {
    await ensureBuilt();
    const [a, b] = freePorts(2);
    const herd = new Herd(
      parseConfig({ servers: { Alpha: { port: a, neighbors: ["Beta"] }, Beta: { port: b } } }),
      {
        ...SERVER_DEFAULTS,
        places: createOfflineProvider(),
        secret: "scale-test-secret-0123456789",
      },
    );
    let d: ServedDashboard | undefined;
    try {
      await herd.start();
      await waitFor(
        () => herd.snapshot(0).servers.every((s) => s.links.every((l) => l.up)),
        10_000,
        "link up",
      );
      // The dashboard subscribes first: its index is fed by the herd's events as they happen.
      d = await serveDashboard(herd, { host: "127.0.0.1", port: 0, quiet: true });
      const dash = d;

      await t.step("bulk-load 1,000,000 clients over TCP; both servers hold them", async () => {
        const started = performance.now();
        const r = await bulk([a, b], COUNT);
        assert.deepEqual(r.errors, 0, r.errorSamples.join("; "));
        assert.deepEqual(r.replies, COUNT);
        await waitFor(
          () => herd.snapshot(0).servers.every((s) => s.records === COUNT),
          180_000,
          "both servers to hold every client",
        );
        console.log(
          `loaded ${COUNT} clients in ${Math.round(performance.now() - started)} ms ` +
            `(bulk.ts: ${r.ms} ms, ${r.rate}/s); dashboard index ${dash.dashboard.clients.size}`,
        );
        assert.deepEqual(dash.dashboard.clients.size, COUNT);
      });

      const page = await browser.newPage({ width: 1280, height: 800 });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));

      await t.step("the page: exact total, counted groups, first render measured", async () => {
        const t0 = performance.now();
        await page.goto(dash.url + "/");
        // The first HTML already draws the groups (server-rendered), before any script runs.
        await page.waitForSelector(".cluster", { timeout: 30_000 });
        const firstRender = performance.now() - t0;
        await page.waitForSelector('[data-island="WorldMap"][data-hydrated="true"]', {
          timeout: 30_000,
        });
        const interactive = performance.now() - t0;
        console.log(
          `first render (groups drawn) ${Math.round(firstRender)} ms; hydrated ${
            Math.round(interactive)
          } ms`,
        );
        assert.deepEqual(await page.textContent('[data-testid="client-count"]'), SHOWN);
        const counts = await page.$$eval(
          ".cluster",
          (els) => els.map((e) => Number(e.getAttribute("data-count"))),
        );
        assert.deepEqual(
          counts.reduce((x, y) => x + y, 0),
          COUNT,
        );
        assert.deepEqual(await page.textContent(".cluster text"), SHOWN);
        // The graph's node labels fit their circles (r 39 less the ring).
        for (const name of ["Alpha", "Beta"]) {
          const w = await page.$eval(
            `[data-server="${name}"] .node-sub`,
            (el) => (el as SVGGraphicsElement).getBBox().width,
          );
          assert.ok(w <= 70, `${name}'s count is ${w} wide`);
          const cell = await page.textContent(`[data-server-row="${name}"] td.num`);
          assert.deepEqual(cell, SHOWN);
        }
      });

      await t.step("interactive at 1M: zoom into a group, search a prefix", async () => {
        await page.waitForFunction(
          () =>
            (globalThis as { __herdLive?: { status: { value: string } } }).__herdLive?.status
              .value === "live",
          undefined,
          { timeout: 30_000 },
        );
        const t0 = performance.now();
        await page.click(".cluster");
        await page.waitForFunction(
          () => document.querySelectorAll(".cluster").length > 1,
          undefined,
          { timeout: 30_000 },
        );
        console.log(
          `zoom into the million: new groups in ${Math.round(performance.now() - t0)} ms`,
        );
        const zoom = Number(await page.getAttribute("svg.world", "data-zoom"));
        assert.ok(zoom > 1, `zoom ${zoom}`);
        const t1 = performance.now();
        const prefix = "c9999";
        let expected = 0;
        for (let i = 0; i < COUNT; i++) if (`c${i}`.startsWith(prefix)) expected++;
        await page.fill('[data-testid="client-search"]', prefix);
        const want = `${new Intl.NumberFormat("en-US").format(expected)} matches`;
        await page.waitForFunction(
          (w) =>
            document.querySelector('[data-testid="client-matches"]')?.textContent?.startsWith(w),
          want,
          { timeout: 30_000 },
        );
        console.log(
          `search over ${SHOWN}: "${want}" in ${
            Math.round(performance.now() - t1)
          } ms (incl. the 200 ms typing pause)`,
        );
        assert.deepEqual(
          await page.getAttribute("[data-client-row]", "data-client-row"),
          `${prefix}.bench.example`,
        );
      });

      assert.deepEqual(errors, [], `page errors: ${errors.join("\n")}`);
    } finally {
      await d?.close();
      await herd.stop();
    }
  },
);
