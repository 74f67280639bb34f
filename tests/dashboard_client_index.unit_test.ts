/**
 * The dashboard's client index (dashboard/client_index.ts): newest-wins per client, exact
 * totals, a prefix search that is right before and after its sorted list absorbs new IDs, and
 * clusters that count every client once and name the lone ones.
 */

import assert from "node:assert/strict";
import { accepted } from "./_helpers/events.ts";
import { EventBus } from "../servers/events.ts";
import { ClientIndex, CLUSTER_SHARE, ClustersBusyError } from "../dashboard/client_index.ts";
import type { HerdSnapshot, HerdView } from "../dashboard/types.ts";

function view(bus: EventBus): HerdView {
  const snap: HerdSnapshot = { servers: [], records: [], places: "offline" };
  return { bus, snapshot: () => snap, allRecords: () => [][Symbol.iterator]() };
}

Deno.test("client index: newest wins; the total counts each client once", () => {
  const bus = new EventBus();
  const index = new ClientIndex(view(bus));
  try {
    bus.emit(accepted("Hill", "a", "2"));
    bus.emit(accepted("Jaquez", "a", "2"));
    bus.emit(accepted("Hill", "a", "1")); // older: ignored
    bus.emit(accepted("Hill", "b", "1"));
    assert.deepEqual(index.total(), 2);
    assert.deepEqual(index.get("a")?.time, "2");
    bus.emit(accepted("Smith", "a", "3"));
    assert.deepEqual(index.get("a")?.origin, "Smith");
    assert.deepEqual(index.total(), 2);
  } finally {
    index.close();
  }
});

Deno.test("client index: prefix search, before and after new IDs are merged in", () => {
  const bus = new EventBus();
  const index = new ClientIndex(view(bus));
  try {
    // Enough IDs to pass the merge threshold, then a few that stay pending.
    for (let i = 0; i < 10_000; i++) bus.emit(accepted("Hill", `k${i}`));
    let r = index.search("k99", 3);
    assert.deepEqual(r.total, 111); // k99, k990..k999, k9900..k9999
    assert.deepEqual(r.records.map((x) => x.client), ["k99", "k990", "k9900"]);
    bus.emit(accepted("Hill", "k99a"));
    bus.emit(accepted("Hill", "k98", "2")); // known: a move, not a new ID
    r = index.search("k99", 3);
    assert.deepEqual(r.total, 112);
    assert.deepEqual(r.records.map((x) => x.client), ["k99", "k990", "k9900"]);
    assert.deepEqual(index.search("k99a", 5).records.map((x) => x.client), ["k99a"]);
    assert.deepEqual(index.search("", 2).total, 10_001); // k98 was there already
    assert.deepEqual(index.search("zz", 5), { total: 0, records: [] });
    // IDs are binary strings: a byte above 0x7f sorts after ASCII and matches by its bytes.
    bus.emit(accepted("Hill", "k\xff"));
    assert.deepEqual(index.search("k\xff", 5).records.map((x) => x.client), ["k\xff"]);
  } finally {
    index.close();
  }
});

Deno.test("client index: a search never sorts more than a bounded tail of new IDs", () => {
  // The first search after a bulk load of a million clients used to sort them all at once,
  // stalling the herd's thread (which runs the dashboard) for seconds.
  const bus = new EventBus();
  const index = new ClientIndex(view(bus));
  try {
    for (let i = 0; i < 100_000; i++) bus.emit(accepted("Hill", `c${(i * 7919) % 100_000}`));
    assert.ok(index.unsorted < 4_096, `${index.unsorted} IDs left unsorted`);
    const r = index.search("c9999", 3);
    assert.deepEqual(r.total, 11); // c9999, c99990..c99999
    assert.deepEqual(r.records.map((x) => x.client), ["c9999", "c99990", "c99991"]);
  } finally {
    index.close();
  }
});

Deno.test("client index: search agrees with a full sort at every size, across runs and the tail", () => {
  const bus = new EventBus();
  const index = new ClientIndex(view(bus));
  const all = new Set<string>();
  // A deterministic mix of lengths and bytes (binary strings, \x80-\xff included).
  let seed = 12345;
  // xorshift32: deterministic and well spread.
  const rnd = (n: number) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const alphabet = "ab\x7f\x80\xffz";
  try {
    for (let step = 0; step < 60_000; step++) {
      let id = "";
      for (let k = 3 + rnd(8); k > 0; k--) id += alphabet[rnd(alphabet.length)];
      all.add(id);
      bus.emit(accepted("Hill", id, String(step + 1)));
      if (step % 2_999 === 0 || step === 59_999) {
        const sorted = [...all].sort();
        for (const prefix of ["", "a", "ab", "\xff", "z\x80", "b\x7fa"]) {
          const want = sorted.filter((id) => id.startsWith(prefix));
          const got = index.search(prefix, 7);
          assert.deepEqual(got.total, want.length, `total for ${JSON.stringify(prefix)}`);
          assert.deepEqual(got.records.map((x) => x.client), want.slice(0, 7));
        }
      }
    }
    // Enough for runs of 4,096 and a run merged from eight of them.
    assert.ok(all.size > 9 * 4_096, `only ${all.size} distinct IDs: too few to make runs`);
  } finally {
    index.close();
  }
});

Deno.test("client index: clusters count every client once; small cells name their clients", () => {
  const bus = new EventBus();
  const index = new ClientIndex(view(bus));
  try {
    for (let i = 0; i < 100; i++) bus.emit(accepted("Hill", `near${i}`, "1", 34, -118));
    for (let i = 0; i < 3; i++) bus.emit(accepted("Hill", `far${i}`, "1", -33.9 + i, 151.2));
    const world = index.clusters(0);
    assert.deepEqual(world.total, 103);
    assert.deepEqual(world.clusters.reduce((n, c) => n + c.n, 0), 103);
    const big = world.clusters.find((c) => c.n === 100);
    assert.ok(big && big.client === undefined, "the 100 share a group");
    // Its extent (for zooming to fit) is the one point they share.
    assert.deepEqual(big.ext, [big.x, big.y, big.x, big.y]);
    const lone = world.clusters.filter((c) => c.n === 1).map((c) => c.client).sort();
    assert.deepEqual(lone, ["far0", "far1", "far2"]);
    assert.deepEqual(world.clusters.find((c) => c.client === "far0")?.rec?.location, "+1+2");
    let refused: unknown;
    try {
      index.clusters(16);
    } catch (err) {
      refused = err;
    }
    assert.ok(refused instanceof RangeError, "the whole world at zoom 16 is too many cells");
  } finally {
    index.close();
  }
});

Deno.test("client index: cluster passes over many clients take at most their share of the thread, however the view box varies (adversarial review)", () => {
  // Found by an adversarial review (adv15): one cached view does not stop a visitor asking for
  // a new view box each time; at a million clients each pass took 16 ms of the herd's thread
  // (186 passes in 3 s, back to back: the thread was the dashboard's all the time).
  const bus = new EventBus();
  const index = new ClientIndex(view(bus));
  try {
    for (let i = 0; i < 300_000; i++) {
      const lat = (i * 7919 % 17000) / 100 - 85;
      const lng = (i * 104729 % 36000) / 100 - 180;
      index.offer(
        { client: `c${i}`, origin: "Hill", diff: "+0", location: `+1+1`, time: "1" },
        lat,
        lng,
      );
    }
    const started = performance.now();
    let spent = 0;
    let longest = 0;
    let busy = 0;
    let k = 0;
    while (performance.now() - started < 2_000) {
      const t = performance.now();
      try {
        index.clusters(0, [k % 100, 0, 960 - (k % 50), 500]);
        const ms = performance.now() - t;
        spent += ms;
        longest = Math.max(longest, ms);
      } catch (err) {
        if (!(err instanceof ClustersBusyError)) throw err;
        busy++;
      }
      k++;
    }
    const elapsed = performance.now() - started;
    assert.ok(busy > 0, "no pass was refused");
    // The share, the burst and the pass that overdrew the budget, plus a tenth of the time for
    // what the index's own clock does not see: this test's stamps are outside its window, and on
    // a loaded box a preemption or a collection there lands in `spent` only (923 ms in 2,001 at
    // load 22). Before the share, passes took the whole thread (~2,000 ms of 2,000).
    assert.ok(
      spent <= elapsed * (CLUSTER_SHARE + 0.1) + 250 + longest,
      `${spent.toFixed(0)} ms of passes in ${elapsed.toFixed(0)} ms`,
    );
    // A view already answered is answered again from the cache, busy or not.
    const box = [0, 0, 960, 500] as const;
    let first;
    for (let tries = 0; first === undefined && tries < 100; tries++) {
      try {
        first = index.clusters(0, box);
      } catch {
        const until = performance.now() + 50;
        while (performance.now() < until) { /* let the budget refill */ }
      }
    }
    assert.ok(first !== undefined);
    assert.equal(index.clusters(0, box), first);
  } finally {
    index.close();
  }
});
