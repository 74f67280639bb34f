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
