/** Link control's pure parts (servers/link_control.ts): change bodies and the ordered delay queue. */

import assert from "node:assert/strict";
import { LineDelay, parseLinkChange } from "../servers/link_control.ts";

Deno.test("link change bodies: cut and delayMs only, clear errors otherwise", () => {
  assert.deepEqual(parseLinkChange({ cut: true }), { change: { cut: true } });
  assert.deepEqual(parseLinkChange({ cut: false, delayMs: 250 }), {
    change: { cut: false, delayMs: 250 },
  });
  for (
    const bad of [null, [], "cut", {}, { cut: "yes" }, { delayMs: -1 }, { delayMs: 1.5 }, {
      delayMs: 10_001,
    }, { cut: true, extra: 1 }]
  ) {
    const r = parseLinkChange(bad);
    assert.ok("error" in r, `accepted ${JSON.stringify(bad)}`);
  }
});

Deno.test("line delay: writes wait their delay and keep their order when it shrinks", async () => {
  const d = new LineDelay();
  const order: string[] = [];
  const started = performance.now();
  const first = d.run(150, () => Promise.resolve(void order.push("slow")));
  // Queued behind the slow one although its own delay is over at once.
  const second = d.run(0, () => Promise.resolve(void order.push("fast")));
  await Promise.all([first, second]);
  assert.deepEqual(order, ["slow", "fast"]);
  assert.ok(performance.now() - started >= 140, "the delay was not applied");
  // Released writes go at once (a dropped connection leaves no timer behind).
  const late = d.run(60_000, () => Promise.resolve(void order.push("released")));
  d.release();
  await late;
  assert.deepEqual(order.at(-1), "released");
});
