/**
 * The flood's trees and health, pure: the same BFS tree per origin at every server (ties by
 * name), the skip sets a link uses, the topology hash, the health's turns and window, the store's
 * renumbering, and the TREE and WARN lines.
 */

import assert from "node:assert/strict";
import { FloodTrees, topologyHash, treeParents } from "../servers/flood_tree.ts";
import { FloodHealth } from "../servers/flood_health.ts";
import { RecordStore } from "../servers/store.ts";
import { formatTree, formatWarn, parseLinkLine } from "../servers/wire.ts";
import { SEED_NAMES, seedNeighbors } from "../servers/seed.ts";

const seed = SEED_NAMES.map((name) => ({ name, neighbors: seedNeighbors()[name] }));

Deno.test("treeParents: the seed's trees, ties to the name that sorts first", () => {
  const hill = treeParents(seed, "Hill");
  assert.deepEqual(Object.fromEntries(hill), {
    Jaquez: "Hill",
    Smith: "Hill",
    Singleton: "Jaquez", // Jaquez and Smith both reach it at depth 2: Jaquez sorts first
    Campbell: "Smith",
  });
  assert.equal(treeParents(seed, "Nobody").size, 0);
  // Every tree spans the herd: servers − 1 edges, each a config link.
  for (const origin of SEED_NAMES) {
    const p = treeParents(seed, origin);
    assert.equal(p.size, SEED_NAMES.length - 1);
    for (const [child, parent] of p) assert.ok(seedNeighbors()[child].includes(parent));
  }
});

Deno.test("FloodTrees: each record's lines over the herd add up to one per server", () => {
  const trees = new Map(SEED_NAMES.map((n) => [n, new FloodTrees(seed, n)]));
  for (const origin of SEED_NAMES) {
    let lines = 0;
    for (const n of SEED_NAMES) {
      for (const peer of seedNeighbors()[n]) if (!trees.get(n)!.skips(peer).has(origin)) lines++;
    }
    assert.equal(lines, SEED_NAMES.length - 1, origin);
  }
  // Never back to the origin; an origin outside the config is never skipped.
  assert.ok(trees.get("Jaquez")!.skips("Hill").has("Hill"));
  assert.ok(!trees.get("Jaquez")!.skips("Hill").has("Elsewhere"));
  assert.equal(trees.get("Jaquez")!.skips("Stranger").size, 0);
});

Deno.test("topologyHash: the same for the same graph in any order, another for another", () => {
  const shuffled = [...seed].reverse().map((n) => ({
    ...n,
    neighbors: [...n.neighbors].reverse(),
  }));
  assert.equal(topologyHash(seed), topologyHash(shuffled));
  assert.match(topologyHash(seed), /^[0-9a-f]{16}$/);
  const more = [...seed, { name: "Zed", neighbors: [] }];
  assert.notEqual(topologyHash(seed), topologyHash(more));
  const fewer = seed.map((n) =>
    n.name === "Hill" || n.name === "Smith"
      ? { ...n, neighbors: n.neighbors.filter((m) => m !== "Hill" && m !== "Smith") }
      : n
  );
  assert.notEqual(topologyHash(seed), topologyHash(fewer));
});

Deno.test("FloodHealth: healthy after a quiet time, degraded at trouble or a new warning", () => {
  const h = new FloodHealth("Hill", { quietMs: 300, windowMs: 1000 }, 0);
  assert.equal(h.update(false, 100, 5), undefined);
  assert.equal(h.update(false, 301, 6), "healthy");
  assert.equal(h.update(false, 400, 7), undefined);
  assert.equal(h.update(true, 500, 8), "degraded");
  assert.equal(h.update(false, 700, 8), undefined, "quiet not long enough");
  assert.equal(h.update(false, 801, 9), "healthy");
  assert.equal(h.warned("Smith", 10, 900), true);
  assert.equal(h.healthy, false);
  assert.equal(h.warned("Smith", 10, 901), false, "the same warning again");
  // Another number, smaller or not, is another warning: a forged `WARN Smith <huge n>` must not
  // make Smith's later real ones look old (nor a clock set back across a restart).
  assert.equal(h.warned("Smith", Number.MAX_SAFE_INTEGER, 902), true, "a larger one");
  assert.equal(h.warned("Smith", 9, 903), true, "a smaller one");
  assert.equal(h.warned("Smith", 9, 904), false, "that one again");
  assert.equal(h.warned("Hill", 99, 905), false, "our own");
  assert.equal(h.update(false, 1100, 9), undefined);
  assert.equal(h.update(false, 1206, 9), "healthy");
  // The window: the head last seen at or before now − windowMs.
  assert.equal(h.windowStart(1206), 5);
  assert.equal(h.windowStart(1801), 9);
  assert.equal(new FloodHealth("X", { quietMs: 1, windowMs: 1000 }).windowStart(10), 0);
  // A number is forgotten after 30 s (its copies came round long before); memory stays bounded.
  assert.equal(h.warned("Smith", 9, 30_904), true, "forgotten, new again");
  // Bounded: past 256 numbers of one server, a new one counts (trouble) but is not kept or
  // passed on; none is pushed out (its late copies would be passed on again: a storm for ever).
  for (let n = 0; n < 10_000; n++) h.warned("Jaquez", n, 31_000);
  assert.equal(h.warned("Jaquez", 0, 31_001), false, "the first kept");
  assert.equal(h.warned("Jaquez", 9_999, 31_002), false, "past the bound: not passed on");
  assert.equal(h.update(false, 31_400, 9), "healthy");
  assert.equal(h.warned("Jaquez", 20_000, 40_000), false, "still full: not passed on...");
  assert.equal(h.healthy, false, "...but trouble");
  assert.equal(h.warned("Jaquez", 20_001, 61_001), true, "forgotten after 30 s: kept again");
});

Deno.test("RecordStore.restamp: the window's current records numbered again, in order, nothing else", () => {
  const store = new RecordStore();
  const rec = (client: string, time: string) => ({
    origin: "Hill",
    diff: "+0.1",
    client,
    location: "+1+2",
    time,
  });
  store.offer(rec("a", "1"), -1);
  store.offer(rec("b", "1"), 0);
  store.offer(rec("c", "1"), 1);
  store.offer(rec("b", "2"), 1); // supersedes b's first
  store.heldBy(store.get("c")!, 0);
  const seen: string[] = [];
  assert.equal(store.restamp(1, (r) => seen.push(`${r.client}@${r.seq}`)), 2);
  assert.deepEqual(seen, ["c@5", "b@6"]);
  assert.equal(store.headSeq, 6);
  assert.equal(store.get("a")!.seq, 1);
  assert.equal(store.get("b")!.via, 1);
  assert.equal(store.get("c")!.held, 0b11, "held bits kept");
  // Link 0's stream skips c (it holds it) and carries b again; link 1 sent both: skips both.
  assert.deepEqual(store.readAfter(4, 10, 0).records.map((r) => r.client), ["b"]);
  assert.deepEqual(store.readAfter(4, 10, 1).records.map((r) => r.client), []);
});

Deno.test("wire: TREE and WARN lines", () => {
  assert.deepEqual(parseLinkLine(formatTree("0123456789abcdef").trimEnd()), {
    type: "TREE",
    hash: "0123456789abcdef",
  });
  assert.deepEqual(parseLinkLine(formatWarn("Hill", 1764300000000).trimEnd()), {
    type: "WARN",
    server: "Hill",
    n: 1764300000000,
  });
  for (
    const bad of [
      "TREE",
      "TREE xyz",
      "TREE 0123456789ABCDEF",
      "WARN Hill",
      "WARN Hill -1",
      "WARN H!ll 5",
      `WARN ${"a".repeat(65)} 5`,
      "WARN Hill 99999999999999999999",
    ]
  ) {
    assert.equal(parseLinkLine(bad), undefined, bad);
  }
});
