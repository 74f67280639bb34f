/**
 * servers/fair.ts: a read loop's turn. Within its slice a loop goes on at once; past it, the turn
 * waits one macrotask, so timers (heartbeats) and other sockets' reads run first.
 */

import assert from "node:assert/strict";
import { FairShare } from "../servers/fair.ts";
import { countTimers, realSetTimeout } from "./_helpers/timers.ts";

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
  // Loops join a yield started less than 1 ms before, and a resumed loop has a 5 ms slice: a
  // round in which this process was off the CPU that long (load 25) proves neither, and is run
  // again (bounded).
  for (let round = 1;; round++) {
    const stalled = (what: string) => {
      if (round === 10) throw new Error(`${what} in ${round} rounds: too loaded a box`);
      return true;
    };
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
    let asking: number;
    try {
      setTimeout(() => (timerRan = true), 0);
      timers = 0;
      const t0 = performance.now();
      turns = loops.map((f) => f.turn());
      asking = performance.now() - t0;
    } finally {
      globalThis.setTimeout = real;
    }
    assert.ok(turns.every((t) => t !== undefined), "every loop past its slice yields");
    let resumed = 0; // just after the loops' new slices began
    await Promise.all(turns.map((t) => t!.then(() => (resumed ||= performance.now()))));
    if (asking >= 1 && stalled(`8 turns asked over ${asking.toFixed(1)} ms`)) continue;
    assert.equal(timers, 1, "one timer for all the loops that yield together");
    assert.equal(timerRan, true, "a timer due before they yielded ran before they resumed");
    const fresh = loops.map((f) => f.turn());
    const late = performance.now() - resumed;
    if (fresh.some((t) => t !== undefined)) {
      await Promise.all(fresh);
      if (late >= 4 && stalled(`a new slice checked ${late.toFixed(1)} ms late`)) continue;
    }
    assert.ok(fresh.every((t) => t === undefined), "each loop starts a new slice");
    busy(10);
    const again = loops.map((f) => f.turn());
    assert.ok(again.every((t) => t !== undefined), "and yields again once it is used up");
    await Promise.all(again);
    return;
  }
});

Deno.test("fair: a loop whose reads wait (macrotasks run between them) never yields, however long it runs", async () => {
  const fair = new FairShare(5);
  const started = performance.now();
  // A loop asks after each read; the first ask, at once, is within the slice.
  assert.equal(fair.turn(), undefined);
  let yields = 0;
  // 40 "reads" that each wait ~1 ms for data (a timer stands for the socket), over 40+ ms: 8
  // slices' worth of time, but the event loop had the thread between every two.
  for (let i = 0; i < 40; i++) {
    await new Promise((r) => setTimeout(r, 1));
    busy(0.2); // handling what it read
    const turn = fair.turn();
    if (turn !== undefined) {
      yields++;
      await turn;
    }
  }
  assert.ok(performance.now() - started > 20, "ran longer than its slice");
  assert.equal(yields, 0, `a loop that waits for its reads yielded ${yields} times`);
  // While one whose reads are always ready still yields once its slice is used up.
  busy(10);
  const turn = fair.turn();
  assert.ok(turn !== undefined, "a busy loop yields");
  await turn;
});

Deno.test("fair: a loop whose reads wait starts no timer to see that the event loop ran, and never yields", async () => {
  // The probe is an immediate: a timer (3 ms, before that 0 ms) woke a `server` process ~200
  // times a second at half of peak, when nothing else would have.
  const fair = new FairShare(30);
  // The probe's timers would be counted; the loop's own waits call the real setTimeout.
  const timers = countTimers();
  let yields = 0;
  const stalls: number[] = [];
  const started = performance.now();
  let last = started;
  try {
    // Reads that each wait ~1 ms for data (a timer stands for the socket), for 150 ms.
    while (performance.now() - started < 150) {
      await new Promise((r) => realSetTimeout(r, 0));
      busy(0.1);
      const now = performance.now();
      const turn = fair.turn(now);
      if (turn !== undefined) {
        // Only a read that took a whole slice (the process off the CPU: 100 ms at load 25) can
        // keep the probe from running in between; then yielding is right.
        if (now - last > 30) stalls.push(now - last);
        else yields++;
        timers.delays.length = 0; // the turn's own 0 ms timer is no probe
        await turn;
      }
      last = performance.now();
    }
  } finally {
    timers.stop();
  }
  assert.equal(yields, 0, `the loop yielded without a stall (after stalls of ${stalls} ms)`);
  assert.deepEqual(timers.delays, [], "the probe started timers");
});

Deno.test("fair: a loop whose reads are always ready in microtasks yields, its probe pending", async () => {
  // What the probe tells apart: reads that resolve without the event loop getting to run (a
  // socket that always has data), so no immediate runs in between however many are armed.
  const fair = new FairShare(5);
  const started = performance.now();
  let turn: Promise<void> | undefined;
  let reads = 0;
  while (turn === undefined && performance.now() - started < 1000) {
    await Promise.resolve();
    busy(0.2);
    reads++;
    turn = fair.turn();
  }
  assert.ok(turn !== undefined, `never yielded in ${reads} ready reads`);
  assert.ok(performance.now() - started >= 5, "not before its slice was used up");
  await turn;
});

Deno.test("fair: a loop that passes its own clock reading gets the same turns", async () => {
  const fair = new FairShare(30);
  assert.equal(fair.turn(performance.now()), undefined, "within its slice");
  busy(40);
  const turn = fair.turn(performance.now());
  assert.ok(turn !== undefined, "past its slice, the loop yields");
  await turn;
  assert.equal(fair.turn(performance.now()), undefined, "a new slice starts after the turn");
  // A reading from before the slice began (taken before the turn) does not end the new slice.
  busy(40);
  const stale = performance.now() - 1000;
  assert.equal(fair.turn(stale), undefined);
});
