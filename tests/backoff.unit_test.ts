/** Retry delays (servers/backoff.ts): doubling up to the cap, starting over, bounded jitter. */

import assert from "node:assert/strict";
import { Backoff, jittered } from "../servers/backoff.ts";

Deno.test("backoff: doubles from the first delay up to the cap, and starts over on reset", () => {
  const b = new Backoff(10, 100);
  assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [
    10,
    20,
    40,
    80,
    100,
    100,
  ]);
  assert.deepEqual(b.current, 100);
  b.reset();
  assert.deepEqual([b.current, b.next(), b.current], [10, 10, 20]);
});

Deno.test("backoff: jitter stays within the spread and does vary", () => {
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const d = jittered(100);
    assert.ok(d >= 75 && d <= 125, String(d));
    seen.add(Math.round(d));
    const wide = jittered(100, 0.5);
    assert.ok(wide >= 50 && wide <= 150, String(wide));
  }
  assert.ok(seen.size > 10, "not a constant");
});
