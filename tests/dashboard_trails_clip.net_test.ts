/**
 * Found by a review of this session's changes (review11 #4): the dashboard's client trails (dashboard/trails.ts) keep and serve whole record
 * fields. Each trail point keeps the record's `time` as it came (up to ~64 KiB of digits), 12
 * points per client for 10,000 clients, outside the record budget (the superseded records' times
 * are pinned by the trail after the stores let them go), and GET /api/client serves them whole:
 * what adv10a #1/#2 closed for events, snapshots and client rows (DISPLAY_MAX) is still open here.
 */

import assert from "node:assert/strict";
import { startSeedHerd, TcpClient } from "./_helpers/net.ts";
import { createDashboard } from "../dashboard/app.ts";
import { DISPLAY_MAX } from "../servers/events.ts";
import type { ClientDetail } from "../dashboard/types.ts";

const PORT = 8080;
const ASSETS = { built: false, islands: {}, chunks: [], styleUrl: "/static/style.css" };
const DIGITS = 60_000;

Deno.test({
  name: "dashboard: a client's trail keeps and serves at most DISPLAY_MAX bytes of a time field",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using h = await startSeedHerd();
    const d = createDashboard(h.herd, { host: "127.0.0.1", port: PORT, assets: ASSETS });
    try {
      await using c = await TcpClient.connect(h.port("Hill"));
      const base = Math.floor(Date.now() / 1000) - 100;
      for (let i = 0; i < 12; i++) {
        await c.send(`IAMAT longtime +1+${i} ${base + i}.${"7".repeat(DIGITS)}\n`);
      }
      const replies = await c.replies(12, 20_000);
      assert.ok(replies.every((r) => r.startsWith("AT ")), replies[0].slice(0, 100));
      await new Promise((r) => setTimeout(r, 300));
      const res = await d.app.request(`http://127.0.0.1:${PORT}/api/client?id=longtime`, {
        headers: { host: `127.0.0.1:${PORT}` },
      });
      const text = await res.text();
      assert.equal(res.status, 200, text.slice(0, 200));
      const body = JSON.parse(text) as ClientDetail;
      const times = body.trail.map((p) => p.time.length);
      assert.ok(
        times.length > 0 && times.every((n) => n <= DISPLAY_MAX + 40),
        `trail times of ${times.join(", ")} chars; the reply is ${text.length} bytes`,
      );
    } finally {
      d.close();
    }
  },
});
