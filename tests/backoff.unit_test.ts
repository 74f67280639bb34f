/** Retry delays (servers/backoff.ts): doubling up to the cap, starting over, bounded jitter. */

import { assert, assertEquals } from "./_helpers/assert.ts";
import { Backoff, jittered } from "../servers/backoff.ts";

Deno.test("backoff: doubles from the first delay up to the cap, and starts over on reset", () => {
  const b = new Backoff(10, 100);
  assertEquals([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [
    10,
    20,
    40,
    80,
    100,
    100,
  ]);
  assertEquals(b.current, 100);
  b.reset();
  assertEquals([b.current, b.next(), b.current], [10, 10, 20]);
});

Deno.test("backoff: jitter stays within the spread and does vary", () => {
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const d = jittered(100);
    assert(d >= 75 && d <= 125, String(d));
    seen.add(Math.round(d));
    const wide = jittered(100, 0.5);
    assert(wide >= 50 && wide <= 150, String(wide));
  }
  assert(seen.size > 10, "not a constant");
});
