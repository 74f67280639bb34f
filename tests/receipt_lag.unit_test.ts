/** servers/receipt_lag.ts: when a link's receipts lag too far behind for the flood's trees. */

import assert from "node:assert/strict";
import { ReceiptLag } from "../servers/receipt_lag.ts";

const bounds = { gapMs: 1000, lagMs: 2000 };

Deno.test("receipt lag: no receipt for the gap while records wait is stalled; nothing waiting never is", () => {
  const lag = new ReceiptLag(bounds);
  assert.equal(lag.stalled(1e9), false);
  lag.sent(5, 100);
  assert.equal(lag.stalled(1100), false);
  assert.equal(lag.stalled(1101), true);
  lag.receipted(5, 1200);
  assert.equal(lag.stalled(1e9), false);
});

Deno.test("receipt lag: a peer that receipts often but ever further behind is stalled once its oldest waits past the lag (review16's slow path)", () => {
  // A record every 50 ms; the peer receipts every 500 ms, but only what was sent t/2 + 200 ms
  // before, ever further behind: the gap rule alone never fires.
  const lag = new ReceiptLag(bounds);
  let stalledAt = -1;
  for (let t = 0, seq = 0; t <= 10_000 && stalledAt < 0; t += 50) {
    lag.sent(++seq, t);
    if (t % 500 === 0 && t > 0) lag.receipted(Math.floor((t / 2 - 200) / 50) + 1, t);
    if (lag.stalled(t)) stalledAt = t;
  }
  assert.ok(stalledAt > 2500 && stalledAt <= 4000, `stalled at ${stalledAt} ms`);
});

Deno.test("receipt lag: a peer that keeps up, receipting in bursts under the lag, is never stalled", () => {
  const lag = new ReceiptLag(bounds);
  for (let t = 0, seq = 0; t <= 60_000; t += 10) {
    lag.sent(++seq, t);
    // Receipts every 300 ms for everything sent up to 200 ms before.
    if (t % 300 === 0) lag.receipted(Math.max(0, seq - 20), t);
    assert.equal(lag.stalled(t), false, `at ${t} ms`);
  }
});

Deno.test("receipt lag: marks stay bounded when receipts never come, and a reset forgets them", () => {
  const lag = new ReceiptLag(bounds);
  for (let t = 0, seq = 0; t < 1_000_000; t += 7) lag.sent(++seq, t);
  assert.equal(lag.stalled(1_000_000), true);
  lag.reset();
  assert.equal(lag.stalled(2_000_000), false);
  lag.sent(1, 2_000_000);
  lag.receipted(1, 2_000_001);
  assert.equal(lag.stalled(3_000_000), false);
});
