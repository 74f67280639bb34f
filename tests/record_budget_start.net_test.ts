/**
 * adv10a #3: docs/protocol.md "Record budget" says a full process still lets known clients
 * "keep updating at the same size or less". In `start` (five servers sharing one RecordTable),
 * the receiving server's old body is also held by the four other stores (holders 5), so
 * RecordTable.fits counts nothing freed and refuses the same-size update with `?` once the
 * budget's slack is below the record's size. A single `server` process (holders 1) accepts it.
 */

import assert from "node:assert/strict";
import { startSeedHerd, TcpClient } from "./_helpers/net.ts";

const BUDGET = 1024 * 1024;
/** A location of ~20 KB (ISO 6709 allows any number of decimals). */
const BIG = "+34." + "1".repeat(20_000) + "-118.5";

async function ask(c: TcpClient, line: string, seen: number): Promise<string> {
  await c.send(line + "\n");
  const replies = await c.replies(seen + 1, 10_000);
  return replies[seen];
}

Deno.test("record budget (start): a known client's same-size update at the budget's edge is answered AT, not ?", async () => {
  await using h = await startSeedHerd({ maxRecordBytes: BUDGET });
  await using c = await TcpClient.connect(h.port("Hill"));
  const t = Math.floor(Date.now() / 1000) - 10;
  let n = 0;
  let refusedBig: string | undefined;
  for (let i = 0; i < 200 && refusedBig === undefined; i++) {
    const r = await ask(c, `IAMAT big${i} ${BIG} ${t}`, n++);
    if (!r.startsWith("AT ")) refusedBig = r;
  }
  assert.ok(refusedBig?.startsWith("? IAMAT big"), "the budget never filled with big records");
  // Fill what is left with small new clients, until one is refused too.
  let refusedSmall: string | undefined;
  for (let i = 0; i < 5_000 && refusedSmall === undefined; i++) {
    const r = await ask(c, `IAMAT small${i} +1+1 ${t}`, n++);
    if (!r.startsWith("AT ")) refusedSmall = r;
  }
  assert.ok(refusedSmall?.startsWith("? IAMAT small"), "the budget never filled with small ones");
  // Let the flood settle: every store holds the same bodies again.
  await new Promise((r) => setTimeout(r, 500));
  // big0 is known: same location, newer time (same size: no growth once the flood is done);
  // big1 the same, 10 bytes shorter (less than it holds now).
  const same = await ask(c, `IAMAT big0 ${BIG} ${t + 1}`, n++);
  const less = await ask(c, `IAMAT big1 ${BIG.replace("1".repeat(10), "")} ${t + 1}`, n++);
  assert.deepEqual(
    [same.slice(0, 12), less.slice(0, 12)].map((r) => r.slice(0, 8)),
    ["AT Hill ", "AT Hill "],
    "known clients' updates of the same size and smaller were refused",
  );
});

Deno.test("record budget: the records-full report is at most once a minute, whatever the wall clock does", async () => {
  // A wall clock the test steps, set before the herd (which may keep a reference to Date.now).
  const wall = Date.now;
  let step = 0;
  Date.now = () => wall() + step;
  try {
    await using h = await startSeedHerd({ maxRecordBytes: BUDGET });
    const said: string[] = [];
    const off = h.herd.bus.subscribe((e) => {
      if (e.kind === "error" && e.reason === "records-full" && e.server === "Hill") {
        said.push(e.message);
      }
    });
    try {
      await using c = await TcpClient.connect(h.port("Hill"));
      const t = Math.floor(wall() / 1000) - 10;
      let n = 0;
      let refused = false;
      for (let i = 0; i < 200 && !refused; i++) {
        refused = !(await ask(c, `IAMAT big${i} ${BIG} ${t}`, n++)).startsWith("AT ");
      }
      assert.ok(refused, "the budget never filled");
      assert.deepEqual(said.length, 1, "one report when the budget filled");
      // The wall clock steps on two minutes (no real minute passed): refused again, not reported
      // again. Stepped back instead, a wall-clock rate limit was silent until the clock caught up.
      step = 120_000;
      const again = await ask(c, `IAMAT late ${BIG} ${t}`, n++);
      assert.ok(again.startsWith("? IAMAT late"), again.slice(0, 40));
      assert.deepEqual(said.length, 1, "reported again within a minute after a wall-clock step");
    } finally {
      off();
    }
  } finally {
    Date.now = wall;
  }
});
