/**
 * WHATSAT waiters for an unknown client: each costs O(1) to add and to
 * remove, and their number is bounded, so 300 connections asking for one ghost client cannot
 * hold up an IAMAT elsewhere (it took 2.8-6.4 s when each expiry filtered the whole list).
 */

import assert from "node:assert/strict";
import { exchange, startSeedHerd, TcpClient, waitFor } from "./_helpers/net.ts";
import { MAX_WAITERS, MAX_WAITERS_PER_CLIENT, RecordStore } from "../servers/store.ts";

const GRACE_MS = 1500;
const CONNS = 300;
/** WHATSATs each connection pipelines (a connection keeps up to 32 in flight). */
const PER_CONN = 32;

Deno.test("waiters: 300 connections waiting on a ghost client; an IAMAT is answered at once", async () => {
  const t = await startSeedHerd({ whatsatGraceMs: GRACE_MS });
  const port = t.port("Hill");
  const store = t.herd.servers.get("Hill")!.store;
  const conns: TcpClient[] = [];
  try {
    for (let i = 0; i < CONNS; i++) conns.push(await TcpClient.connect(port));
    const ask = "WHATSAT ghost 10 0\n".repeat(PER_CONN);
    const sent = performance.now();
    await Promise.all(conns.map((c) => c.send(ask)));
    assert.ok(store.waiting <= MAX_WAITERS_PER_CLIENT, `${store.waiting} waiting`);
    // IAMATs on another connection, before and across the moment the waiters expire.
    const iamat = await TcpClient.connect(port);
    const latencies: number[] = [];
    const now = Math.floor(Date.now() / 1000);
    for (let i = 0; performance.now() - sent < GRACE_MS + 1000; i++) {
      const before = iamat.received.length;
      const t0 = performance.now();
      await iamat.send(`IAMAT real.${i} +1+1 ${now}\n`);
      await iamat.waitUntil((r) => r.indexOf("\n", before) !== -1, 10_000);
      latencies.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 20));
    }
    await iamat.close();
    latencies.sort((a, b) => a - b);
    const median = latencies[latencies.length >> 1];
    const max = latencies[latencies.length - 1];
    console.log(
      `  ${latencies.length} IAMATs while ${CONNS * PER_CONN} WHATSATs asked for a ghost: ` +
        `median ${median.toFixed(1)} ms, max ${max.toFixed(1)} ms`,
    );
    // Generous for a loaded 2-core machine; the quadratic expiry took seconds.
    assert.ok(median < 50, `median IAMAT latency ${median.toFixed(1)} ms`);
    assert.ok(max < 500, `slowest IAMAT ${max.toFixed(1)} ms`);
    // Every WHATSAT got its `?`, and no waiter is left.
    await Promise.all(
      conns.map((c) => c.waitUntil((r) => r.length >= ask.length + 2 * PER_CONN, 15_000)),
    );
    for (const c of conns) assert.deepEqual(c.received, ask.replaceAll("WHATSAT", "? WHATSAT"));
    await waitFor(() => store.waiting === 0, 5000, "no waiter left");
  } finally {
    await Promise.all(conns.map((c) => c.close()));
    await t.close();
  }
});

Deno.test("waiters: bounded per client and in all; a record wakes its waiters", async () => {
  const store = new RecordStore();
  const ghost = Array.from(
    { length: MAX_WAITERS_PER_CLIENT + 5 },
    () => store.whenKnown("g", 60_000),
  );
  assert.deepEqual(store.waiting, MAX_WAITERS_PER_CLIENT);
  // Beyond the bound: undefined at once.
  const extra = await Promise.all(ghost.slice(MAX_WAITERS_PER_CLIENT));
  assert.ok(extra.every((r) => r === undefined));
  const others: Promise<unknown>[] = [];
  for (let i = 0; store.waiting < MAX_WAITERS; i++) others.push(store.whenKnown(`o.${i}`, 50));
  assert.deepEqual(await store.whenKnown("one.more", 60_000), undefined, "over the total bound");
  store.offer({ origin: "A", diff: "+0.000000000", client: "g", location: "+1+1", time: "1" }, -1);
  const woken = await Promise.all(ghost.slice(0, MAX_WAITERS_PER_CLIENT));
  assert.ok(woken.every((r) => r?.client === "g"), "every waiter woken with the record");
  await Promise.all(others);
  assert.deepEqual(store.waiting, 0);
});

Deno.test("waiters: a WHATSAT beyond the bound is answered `?` at once", async () => {
  await using t = await startSeedHerd({ whatsatGraceMs: 60_000 });
  const port = t.port("Hill");
  const conns: TcpClient[] = [];
  for (let i = 0; i < MAX_WAITERS_PER_CLIENT / 32; i++) {
    const c = await TcpClient.connect(port);
    await c.send("WHATSAT ghost 10 0\n".repeat(32));
    conns.push(c);
  }
  const store = t.herd.servers.get("Hill")!.store;
  await waitFor(() => store.waiting === MAX_WAITERS_PER_CLIENT, 5000, "the bound reached");
  const t0 = performance.now();
  assert.deepEqual(await exchange(port, "WHATSAT ghost 10 0\n"), "? WHATSAT ghost 10 0\n");
  assert.ok(performance.now() - t0 < 5000, "not after the 60 s grace");
  for (const c of conns) await c.close();
});
