/**
 * The flood's trees against a peer that lies in `WARN` lines (servers/flood_health.ts): a
 * herd member that sends `WARN <server> <huge n>` for every name must not silence the real
 * warnings that come after it, or the herd stays on the trees around a dead server and a
 * server whose tree parent died never gets the records its other neighbours skip.
 */

import assert from "node:assert/strict";
import { startSeedHerd, TcpClient, type TestHerd, waitFor } from "./_helpers/net.ts";

/** Every running server uses the trees. */
function treesEverywhere(t: TestHerd): boolean {
  return [...t.herd.servers.values()].every((s) => s.treesInUse);
}

/** Forged warnings of every server: the largest n a line may carry, or the most kept (256). */
const FORGERIES: [string, (name: string) => string][] = [
  ["with the largest n", (name) => `WARN ${name} ${Number.MAX_SAFE_INTEGER}\n`],
  [
    "filling what a server keeps (256 numbers each)",
    (name) => Array.from({ length: 256 }, (_, i) => `WARN ${name} ${i}\n`).join(""),
  ],
];

for (const [what, forge] of FORGERIES) {
  Deno.test(`flood trees: forged WARN lines ${what} do not silence the herd's real warnings (a dead server's records still go round it)`, async () => {
    await using t = await startSeedHerd({ tcpLinks: true });
    await waitFor(() => treesEverywhere(t), 20_000, "trees in use");
    // Singleton (a herd member with the secret) forges warnings of every server over its real
    // links; its neighbours pass each on, once.
    const singleton = t.herd.servers.get("Singleton")!;
    const forged = t.config.servers.map((s) => forge(s.name)).join("");
    for (const l of singleton.links) assert.ok(l.sendControl(forged), `to ${l.peer}`);
    // The forgeries turn the herd degraded a while; wait until it is back on the trees.
    await new Promise((r) => setTimeout(r, 500));
    await waitFor(() => treesEverywhere(t), 20_000, "trees in use again");
    // Smith dies. Campbell's tree reaches Hill only through Smith (Campbell→Smith→Hill); Jaquez,
    // Hill's other neighbour, sends Campbell's records to Hill only while it hears the warnings
    // of Smith's neighbours (it is not a neighbour of Smith: no trouble of its own).
    await t.herd.stopServer("Smith");
    const c = await TcpClient.connect(t.port("Campbell"));
    try {
      await c.send("IAMAT forged.warn +34.068930-118.445127 1700000000.5\n");
      await c.replies(1, 10_000);
    } finally {
      c.conn.close();
    }
    await waitFor(
      () => t.herd.servers.get("Hill")!.store.get("forged.warn") !== undefined,
      5_000,
      "Campbell's record at Hill, round the dead Smith",
    );
    assert.ok(!t.herd.servers.get("Jaquez")!.treesInUse, "Jaquez heard the real warnings");
  });
}

Deno.test("flood trees: a member sending WARN lines in a loop (a storm, then one just past each quiet time) costs at most one re-send of what it stores meanwhile, and loses nothing", async () => {
  await using t = await startSeedHerd({ tcpLinks: true });
  await waitFor(() => treesEverywhere(t), 20_000, "trees in use");
  const servers = [...t.herd.servers.values()];
  const again = () => servers.reduce((n, s) => n + s.recordsFloodedAgain, 0);
  const singleton = t.herd.servers.get("Singleton")!;
  const forge = (lines: string) => {
    for (const l of singleton.links) l.sendControl(lines);
  };
  // IAMATs at Hill all along: 20 every 20 ms.
  let stop = false;
  let stored = 0;
  const clients: string[] = [];
  const load = (async () => {
    const c = await TcpClient.connect(t.port("Hill"));
    try {
      for (let b = 0; !stop; b++) {
        const batch = Array.from({ length: 20 }, (_, i) => `loop.${b}.${i}`);
        await c.send(batch.map((cl) => `IAMAT ${cl} +1+1 1700000000\n`).join(""));
        await c.replies(stored + 20, 10_000);
        stored += 20;
        clients.push(...batch);
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      c.conn.close();
    }
  })();
  const before = again();
  try {
    // A storm: 2,000 new warnings in one write, each passed on once by each server.
    forge(Array.from({ length: 2000 }, (_, i) => `WARN Campbell ${i}\n`).join(""));
    await new Promise((r) => setTimeout(r, 1000));
    // Then one warning just past each quiet time (3 heartbeats): healthy, degraded, and so on.
    for (let i = 0; i < 4; i++) {
      // (Before the storm's warnings were bounded by refusal, not pushing out, their late copies
      // went round for ever and the herd never came back to the trees: seen failing.)
      await waitFor(() => treesEverywhere(t), 20_000, "trees in use again");
      forge(`WARN Jaquez ${10_000 + i}\n`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    stop = true;
    await load;
  }
  const flooded = again() - before;
  console.log(`  ${stored} IAMATs stored at Hill meanwhile; records numbered again: ${flooded}`);
  // Each turn numbers again only what was stored since the herd last turned healthy: at most
  // once per server per record, whatever the peer sends.
  assert.ok(flooded <= 5 * stored, `${flooded} numbered again for ${stored} IAMATs`);
  await waitFor(
    () => servers.every((s) => clients.every((c) => s.store.get(c) !== undefined)),
    10_000,
    "every IAMAT everywhere",
  );
});
