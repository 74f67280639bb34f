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

Deno.test("flood trees: forged WARN lines with the largest n do not silence the herd's real warnings (a dead server's records still go round it)", async () => {
  await using t = await startSeedHerd({ tcpLinks: true });
  await waitFor(() => treesEverywhere(t), 20_000, "trees in use");
  // Singleton (a herd member with the secret) forges a warning of every server with the largest
  // n a WARN line may carry, over its real links; its neighbours pass each on, once.
  const singleton = t.herd.servers.get("Singleton")!;
  const forged = t.config.servers
    .map((s) => `WARN ${s.name} ${Number.MAX_SAFE_INTEGER}\n`)
    .join("");
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
