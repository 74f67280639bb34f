/**
 * servers/fair.ts: a read loop's turn. Within its slice a loop goes on at once; past it, the turn
 * waits one macrotask, so timers (heartbeats) and other sockets' reads run first.
 */

import assert from "node:assert/strict";
import { FairShare } from "../servers/fair.ts";

function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // a loop that only ever finds its reads ready
  }
}

Deno.test("fair: no pause within the slice; past it, a timer due earlier runs first", async () => {
  const fair = new FairShare(30);
  assert.equal(fair.turn(), undefined, "a fresh loop goes on at once");
  busy(40);
  let timerRan = false;
  setTimeout(() => (timerRan = true), 0);
  const turn = fair.turn();
  assert.ok(turn !== undefined, "past its slice, the loop yields");
  assert.equal(timerRan, false);
  await turn;
  assert.equal(timerRan, true, "the pending timer ran before the loop resumed");
  assert.equal(fair.turn(), undefined, "a new slice starts after the turn");
});

Deno.test("fair: loops past their slices at once share one timer, and each still waits a macrotask", async () => {
  const loops = Array.from({ length: 8 }, () => new FairShare(5));
  busy(10);
  const real = globalThis.setTimeout;
  let timers = 0;
  // Count the timers the loops start (any other code's too: none runs here).
  globalThis.setTimeout = ((fn: () => void, ms?: number) => {
    timers++;
    return real(fn, ms);
  }) as typeof setTimeout;
  let turns: (Promise<void> | undefined)[];
  let timerRan = false;
  try {
    setTimeout(() => (timerRan = true), 0);
    timers = 0;
    turns = loops.map((f) => f.turn());
  } finally {
    globalThis.setTimeout = real;
  }
  assert.ok(turns.every((t) => t !== undefined), "every loop past its slice yields");
  assert.equal(timers, 1, "one timer for all the loops that yield together");
  await Promise.all(turns);
  assert.equal(timerRan, true, "a timer due before they yielded ran before they resumed");
  assert.ok(loops.every((f) => f.turn() === undefined), "each loop starts a new slice");
  busy(10);
  const again = loops.map((f) => f.turn());
  assert.ok(again.every((t) => t !== undefined), "and yields again once it is used up");
  await Promise.all(again);
});
