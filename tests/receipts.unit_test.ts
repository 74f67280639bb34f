/**
 * The receipt bookkeeping of a link (servers/receipts.ts): per-record receipts as ranges, no
 * head-of-line blocking, bounded waits.
 */

import assert from "node:assert/strict";
import { ReceiptCountdown, ReceiptQueue, ReceiptWaiters } from "../servers/receipts.ts";

Deno.test("receipts: ready records are receipted in ranges that cover the skipped numbers between them", () => {
  let wakes = 0;
  const q = new ReceiptQueue(() => wakes++);
  q.reset(0);
  q.add(3);
  q.add(5);
  assert.deepEqual(q.take(), "A 1 5\n");
  assert.deepEqual(q.take(), "", "nothing twice");
  const onward = new ReceiptCountdown(1);
  q.add(8, onward);
  q.add(9);
  q.add(12);
  // The record waiting on its onward receipts does not hold up the ones after it.
  assert.deepEqual(q.take(), "A 9 12\n");
  assert.deepEqual(wakes, 0);
  onward.tick();
  assert.deepEqual(wakes, 1, "the link is told to send");
  assert.deepEqual(q.take(), "A 6 8\n");
  q.add(13);
  assert.deepEqual(q.take(), "A 13 13\n");
});

Deno.test("receipts: only a ready receipt someone may wait for is urgent; lazy ones (an `S`) ride along", () => {
  const q = new ReceiptQueue();
  q.reset(0);
  q.add(4, undefined, true);
  assert.equal(q.urgent, false, "an S alone is worth no write");
  q.add(6);
  assert.equal(q.urgent, true, "a record's receipt is");
  assert.deepEqual(q.take(), "A 1 6\n", "the S's receipt rides with it");
  assert.equal(q.urgent, false);
  // A record waiting on its onward links turns urgent when they settle; a lazy one never does.
  const onward = new ReceiptCountdown(1);
  q.add(7, onward);
  q.add(9, undefined, true);
  assert.equal(q.urgent, false);
  onward.tick();
  assert.equal(q.urgent, true);
  assert.deepEqual(q.take(), "A 7 9\n");
  // After a reset (a new connection), nothing of the old one is owed.
  q.add(10);
  q.reset(20);
  assert.equal(q.urgent, false);
});

Deno.test("receipts: entries of a connection that was replaced never wake the new one", () => {
  let wakes = 0;
  const q = new ReceiptQueue(() => wakes++);
  const onward = new ReceiptCountdown(1);
  q.add(4, onward);
  q.reset(0);
  onward.tick();
  assert.deepEqual(wakes, 0);
  assert.deepEqual(q.take(), "");
});

Deno.test("receipts: a record's countdown settles once, after the last of its links; one settled before it is queued is ready at once", () => {
  const c = new ReceiptCountdown(3);
  let settled = 0;
  c.onSettled(() => settled++);
  c.tick();
  c.tick();
  assert.deepEqual([c.settled, settled], [false, 0], "two of three links answered");
  c.tick();
  assert.deepEqual([c.settled, settled], [true, 1]);
  let later = 0;
  c.onSettled(() => later++);
  assert.deepEqual(later, 1, "a listener added once settled is called at once");

  // Every link answered while the record was offered (a late link answers at once): the
  // receipt is ready as it is queued, with no wake-up.
  let wakes = 0;
  const q = new ReceiptQueue(() => wakes++);
  q.reset(0);
  const done = new ReceiptCountdown(1);
  done.tick();
  q.add(2, done);
  q.add(3, new ReceiptCountdown(0));
  assert.deepEqual(q.take(), "A 1 3\n");
  assert.deepEqual(wakes, 0);
});

Deno.test("receipt waiters: resolved by a covering range, out of order; timed out after the bound; released when the link drops", async () => {
  const w = new ReceiptWaiters();
  const a = w.wait(3, 10_000);
  const b = w.wait(7, 10_000);
  const c = w.wait(9, 10_000);
  w.receipted(6, 8);
  assert.deepEqual(await b, true);
  assert.deepEqual(w.size, 2);
  w.receipted(1, 3);
  assert.deepEqual(await a, true);
  const late = w.wait(11, 20);
  assert.deepEqual(await late, false, "no receipt within the bound");
  w.clear();
  assert.deepEqual(await c, true, "a dropped link is not waited for");
  assert.deepEqual(w.size, 0);
  // A range that covers nobody changes nothing.
  const d = w.wait(20, 30);
  w.receipted(21, 40);
  w.receipted(1, 19);
  assert.ok(!(await d));
});

Deno.test("receipt waiters: one timed-out receipt releases every waiter and reports once; none wait until the next receipt or a relink", async () => {
  const w = new ReceiptWaiters();
  const first = w.wait(1, 20);
  const second = w.wait(2, 40);
  const third = w.wait(3, 10_000);
  assert.deepEqual(await Promise.all([first, second, third]), [false, true, true]);
  assert.ok(w.late);
  assert.deepEqual(w.size, 0);
  // Late: answered at once, not waited for (and not reported again).
  const t0 = performance.now();
  assert.deepEqual(await w.wait(4, 10_000), true);
  assert.ok(performance.now() - t0 < 1000);
  assert.deepEqual(w.size, 0);
  // Its next receipt: waited for again.
  w.resume();
  assert.ok(!w.late);
  const again = w.wait(5, 10_000);
  assert.deepEqual(w.size, 1);
  w.receipted(5, 5);
  assert.deepEqual(await again, true);
  // A relink (clear) also ends it.
  assert.deepEqual(await w.wait(6, 10), false);
  assert.ok(w.late);
  w.clear();
  assert.ok(!w.late);
});
