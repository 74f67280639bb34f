/**
 * A flood from a just-restarted server: the CS 131 TA scripts restart servers, wait ~0.5 s, send
 * an IAMAT to one of them and a WHATSAT to another right after its AT reply. A restarted server
 * answers clients before its links are up again; the record reaches the neighbours with the
 * link's catch-up, tens of ms later (hundreds on a loaded box). The AT reply must not come before
 * that, or the WHATSAT elsewhere finds the client's previous location (soak15: 25 of 30 grader-style
 * cases at load ~27).
 */

import assert from "node:assert/strict";
import { clientTime, exchange, startSeedHerd } from "./_helpers/net.ts";

Deno.test("restart flood: the AT reply of a just-restarted server comes after its neighbours hold the record", async () => {
  await using t = await startSeedHerd({ tcpLinks: true });
  const client = "restart-flood.cs.ucla.edu";
  // Hill's two neighbours are the restarted pair, as in the TA script's kill-two cases.
  const old = await exchange(
    t.port("Hill"),
    `IAMAT ${client} +34.06-118.44 ${clientTime(-60_000)}\n`,
  );
  assert.match(old, /^AT Hill /);
  for (let round = 0; round < 3; round++) {
    await t.herd.stopServer("Jaquez");
    await t.herd.stopServer("Smith");
    await t.herd.startServer("Jaquez");
    await t.herd.startServer("Smith");
    const at = await exchange(
      t.port("Jaquez"),
      `IAMAT ${client} +10.${round}-20.5 ${clientTime(round * 1000)}\n`,
      10_000,
    );
    assert.match(at, /^AT Jaquez /);
    for (const other of ["Smith", "Hill", "Singleton", "Campbell"]) {
      const reply = await exchange(t.port(other), `WHATSAT ${client} 10 1\n`, 10_000);
      assert.equal(reply.split("\n")[0] + "\n", at, `round ${round}: ${other} after the reply`);
    }
  }
});

Deno.test("restart flood: the reply waits for no receipt that came already with the catch-up", async () => {
  // A record the restarted server took before its links came up goes out in its catch-up
  // stream, receipted at once; a receipt wait begun after the warm-up for a link that sent it
  // already would wait in vain (here 20 s: with the default 50 ms, a false LATE RECEIPT and a
  // link not waited for until its next receipt).
  await using t = await startSeedHerd({ tcpLinks: true, receiptWaitMs: 20_000 });
  const late: unknown[] = [];
  const off = t.herd.bus.subscribe((e) => e.kind === "receipt.late" && late.push(e));
  try {
    const client = "restart-receipts.cs.ucla.edu";
    for (let round = 0; round < 3; round++) {
      await t.herd.stopServer("Smith");
      await t.herd.startServer("Smith");
      const sent = performance.now();
      const at = await exchange(
        t.port("Smith"),
        `IAMAT ${client} +10.${round}-20.5 ${clientTime(round * 1000)}\n`,
        15_000,
      );
      assert.match(at, /^AT Smith /);
      const ms = performance.now() - sent;
      // The warm-up is at most 3 s; a wait for a receipt already in would be the 20 s bound.
      assert.ok(ms < 10_000, `round ${round}: the AT reply took ${Math.round(ms)} ms`);
      for (const other of ["Hill", "Campbell", "Singleton", "Jaquez"]) {
        const reply = await exchange(t.port(other), `WHATSAT ${client} 10 1\n`, 10_000);
        assert.equal(reply.split("\n")[0] + "\n", at, `round ${round}: ${other} after the reply`);
      }
    }
    assert.deepEqual(late, []);
  } finally {
    off();
  }
});
