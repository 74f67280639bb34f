/**
 * servers/link_hold.ts: the held writes of every link of a process run on one timer.
 */

import assert from "node:assert/strict";
import { HeldWrites } from "../servers/link_hold.ts";
import { countTimers, realSetTimeout } from "./_helpers/timers.ts";

Deno.test("held writes: every link's held write goes when the earliest is due, on one timer", async () => {
  const holds = new HeldWrites();
  const timers = countTimers();
  const ran: string[] = [];
  const [a, b, c] = [{}, {}, {}];
  const t0 = performance.now();
  try {
    holds.hold(a, t0 + 30, () => ran.push("a"));
    holds.hold(b, t0 + 40, () => ran.push("b"));
    holds.hold(c, t0 + 20, () => ran.push("c"));
  } finally {
    timers.stop();
  }
  assert.equal(
    timers.delays.length,
    2,
    "a timer, and one again for an earlier hold; none for a later one",
  );
  assert.equal(holds.size, 3);
  await new Promise((r) => realSetTimeout(r, 10));
  assert.deepEqual(ran, [], "nothing before the earliest is due");
  await new Promise((r) => realSetTimeout(r, 60));
  assert.deepEqual(ran.toSorted(), ["a", "b", "c"], "all of them when it is");
  assert.equal(holds.size, 0);
});

Deno.test("held writes: a released write never runs, and the last one takes the timer with it", () => {
  const holds = new HeldWrites();
  const ran: string[] = [];
  const [a, b] = [{}, {}];
  holds.hold(a, performance.now() + 5, () => ran.push("a"));
  holds.hold(b, performance.now() + 5, () => ran.push("b"));
  holds.release(a);
  holds.release(b);
  holds.release(b); // twice: nothing more to do
  assert.equal(holds.size, 0);
  // The test's op sanitizer fails it if a timer is left pending.
  assert.deepEqual(ran, []);
});
