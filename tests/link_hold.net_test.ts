/**
 * A busy link's held writes (`LinkOptions.writeHoldMs`, servers/peers.ts, servers/link_hold.ts)
 * over real sockets: two in-process servers, A and B, linked; what A writes to B is seen as A's
 * `propagation.sent` events (one per write that carries records) and as B's records.
 */

import assert from "node:assert/strict";
import { SERVER_DEFAULTS } from "../servers/options.ts";
import { pairHerd, TcpClient, waitFor } from "./_helpers/net.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A and B linked, A's writes to B timed; heartbeats far apart, so only records write. */
async function startPair(writeHoldMs: number) {
  const { herd, portA } = pairHerd({
    link: { ...SERVER_DEFAULTS.link, heartbeatMs: 30_000, writeHoldMs },
  });
  const writes: { at: number; records: string[] }[] = [];
  const off = herd.bus.subscribe((e) => {
    if (e.kind === "propagation.sent" && e.server === "A" && !e.catchUp) {
      writes.push({ at: performance.now(), records: e.records.map((r) => r.client) });
    }
  });
  await herd.start();
  const client = await TcpClient.connect(portA);
  return {
    writes,
    client,
    /** True once B holds `client`'s record. */
    bHas: (id: string) => herd.servers.get("B")!.store.get(id) !== undefined,
    async up() {
      await waitFor(
        () => [...herd.servers.values()].every((s) => s.links.every((l) => l.up)),
        10_000,
        "link up",
      );
    },
    async [Symbol.asyncDispose]() {
      off();
      await client.close();
      await herd.stop();
    },
  };
}

const iamat = (id: string, t: number) => `IAMAT ${id} +34.068930-118.445127 ${1700000000 + t}.5\n`;

Deno.test("link hold: a link that has not written for the hold sends a record at once", async () => {
  const HOLD = 400;
  await using p = await startPair(HOLD);
  await p.up();
  // The link's last write (its SYNC and CAUGHTUP) is over a hold ago.
  await sleep(HOLD + 200);
  const sent = performance.now();
  await p.client.send(iamat("idle1", 1));
  await waitFor(() => p.bHas("idle1"), 5_000, "B has the record");
  const took = performance.now() - sent;
  assert.equal(p.writes.length, 1, `writes: ${JSON.stringify(p.writes)}`);
  // A held write would have waited ~HOLD ms.
  assert.ok(took < HOLD / 2, `an idle link's record took ${took.toFixed(1)} ms to reach B`);
  await p.client.replies(1, 5_000);
});

Deno.test("link hold: records that come within the hold of the link's last write go in one write, when it ends", async () => {
  const HOLD = 150;
  const BURST = 10;
  await using p = await startPair(HOLD);
  await p.up();
  await sleep(HOLD + 200);
  // One record on the idle link (written at once), then ten more 10 ms apart, each read on its
  // own: without the hold, each would be its own write.
  await p.client.send(iamat("burst0", 0));
  await waitFor(() => p.writes.length === 1, 5_000, "the first write");
  for (let i = 1; i <= BURST; i++) {
    await sleep(10);
    await p.client.send(iamat(`burst${i}`, i));
  }
  await waitFor(() => p.bHas(`burst${BURST}`), 5_000, "B has the last record");
  await p.client.replies(BURST + 1, 5_000);
  const sent = p.writes.flatMap((w) => w.records);
  assert.deepEqual(
    sent.toSorted(),
    Array.from({ length: BURST + 1 }, (_, i) => `burst${i}`).toSorted(),
  );
  // The burst lasts ~100 ms (more on a loaded box): within the first hold, or two at most.
  assert.ok(p.writes.length <= 3, `${p.writes.length} writes: ${JSON.stringify(p.writes)}`);
  const gap = p.writes[1].at - p.writes[0].at;
  // The held write goes when the hold ends, not before, and not long after (a bound, not a
  // measure: timers run late on a loaded box).
  assert.ok(gap >= HOLD * 0.9, `the second write went ${gap.toFixed(1)} ms after the first`);
  assert.ok(gap < HOLD + 250, `the second write waited ${gap.toFixed(1)} ms, past the hold`);
});

Deno.test("link hold: with no hold, each turn's records are their own write", async () => {
  await using p = await startPair(0);
  await p.up();
  for (let i = 0; i <= 5; i++) {
    await p.client.send(iamat(`each${i}`, i));
    await waitFor(() => p.bHas(`each${i}`), 5_000, `B has each${i}`);
  }
  await p.client.replies(6, 5_000);
  assert.equal(p.writes.length, 6, `writes: ${JSON.stringify(p.writes)}`);
});
