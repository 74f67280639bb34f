import assert from "node:assert/strict";
import { formatAt } from "../servers/protocol.ts";
import { compareDiffs, compareRecords } from "../servers/record.ts";
import { RecordStore } from "../servers/store.ts";
import { RecordTable } from "../servers/record_table.ts";

Deno.test("store: newer wins, stale and duplicates stop, ties break the same everywhere", () => {
  const base = { origin: "Hill", diff: "+0.1", client: "k", location: "+1+1", time: "10" };
  const a = new RecordStore();
  assert.deepEqual(a.offer(base, -1).result, "new");
  assert.deepEqual(a.offer(base, -1).result, "duplicate");
  assert.deepEqual(a.offer({ ...base, time: "9.99" }, -1).result, "stale");
  assert.deepEqual(a.offer({ ...base, time: "10.0", location: "+2+2" }, -1).result, "new"); // tie: "10.0" > "10"
  assert.deepEqual(a.offer(base, -1).result, "stale");
  assert.deepEqual(a.offer({ ...base, time: "11" }, -1).result, "new");
  assert.deepEqual(a.get("k")!.time, "11");

  // Two servers that see the same tied records in opposite orders end with the same one.
  const x = { ...base, origin: "Hill", location: "+5+5" };
  const y = { ...base, origin: "Smith", location: "+5+5" };
  const s1 = new RecordStore();
  const s2 = new RecordStore();
  s1.offer(x, -1);
  s1.offer(y, -1);
  s2.offer(y, -1);
  s2.offer(x, -1);
  assert.deepEqual(formatAt(s1.get("k")!), formatAt(s2.get("k")!));
  assert.ok(compareRecords(x, y) !== 0);
});

Deno.test("store: the very same report received again later (a larger diff) is stale, here or elsewhere", () => {
  const first = { origin: "Hill", diff: "+0.250000000", client: "k", location: "+1+1", time: "10" };
  const s = new RecordStore();
  assert.deepEqual(s.offer(first, -1).result, "new");
  // Re-sent to Hill 20 ms later, and to Smith (whose name sorts after Hill's).
  assert.deepEqual(s.offer({ ...first, diff: "+0.270000000" }, -1).result, "stale");
  assert.deepEqual(
    s.offer({ ...first, origin: "Smith", diff: "+0.271000000" }, -1).result,
    "stale",
  );
  assert.deepEqual(s.get("k")!.diff, "+0.250000000");
  // Received earlier somewhere (a smaller diff, negative ones included): that one wins everywhere.
  assert.deepEqual(s.offer({ ...first, origin: "Smith", diff: "-0.100000000" }, -1).result, "new");
  assert.deepEqual(
    s.offer({ ...first, origin: "Jaquez", diff: "-0.000000001" }, -1).result,
    "stale",
  );
  assert.deepEqual(s.get("k")!.origin, "Smith");
});

Deno.test("store: change log reads after a cursor, skipping superseded and the source link", () => {
  const s = new RecordStore();
  const rec = (client: string, time: string) => ({
    origin: "Hill",
    diff: "+0.1",
    client,
    location: "+1+1",
    time,
  });
  s.offer(rec("a", "1"), -1); // seq 1
  s.offer(rec("b", "1"), 0); // seq 2, came on link 0
  s.offer(rec("a", "2"), -1); // seq 3 supersedes seq 1
  assert.deepEqual(s.readAfter(0, 10).records.map((r) => r.seq), [2, 3]);
  assert.deepEqual(s.readAfter(0, 10, 0).records.map((r) => r.seq), [3]);
  assert.deepEqual(s.readAfter(2, 10).records.map((r) => r.seq), [3]);
  assert.deepEqual(s.readAfter(3, 10), { records: [], lastSeq: 3 });
  assert.deepEqual(s.readAfter(0, 1).lastSeq, 2);
});

Deno.test("store: a record a link sent again is skipped for that link only, not in a resend", () => {
  const s = new RecordStore();
  const rec = { origin: "Hill", diff: "+0.1", client: "a", location: "+1+1", time: "1" };
  const { record } = s.offer(rec, 0); // came on link 0
  s.heldBy(record!, 2); // link 2 sent it too
  s.heldBy(record!, 40); // a link index past the mask's bits: no claim, no harm
  assert.deepEqual(s.readAfter(0, 10, 0).records.length, 0);
  assert.deepEqual(s.readAfter(0, 10, 2), { records: [], lastSeq: 1 });
  assert.deepEqual(s.readAfter(0, 10, 1).records.map((r) => r.seq), [1]);
  assert.deepEqual(s.readAfter(0, 10, 40).records.map((r) => r.seq), [1]);
  // A resend (skipVia -2) skips nothing.
  assert.deepEqual(s.readAfter(0, 10).records.map((r) => r.seq), [1]);
});

Deno.test("store: time differences compare as signed decimals", () => {
  const sorted = [
    "-10.000000000",
    "-2.500000000",
    "-0.000000001",
    "+0.000000000",
    "+0.000000001",
    "+2.000000000",
    "+10.000000000",
  ];
  for (const [i, a] of sorted.entries()) {
    for (const [j, b] of sorted.entries()) {
      assert.equal(Math.sign(compareDiffs(a, b)), Math.sign(i - j), `${a} vs ${b}`);
    }
  }
  assert.equal(compareDiffs("-0.000000000", "+0.000000000"), 0);
});

Deno.test("store: holdsAtLeast tells a store of the same table whether it holds a record or a newer one", () => {
  const table = new RecordTable();
  const ours = new RecordStore(table);
  const peer = new RecordStore(table);
  const rec = { origin: "Hill", diff: "+0.1", client: "k", location: "+1+1", time: "10" };
  const mine = ours.offer(rec, -1).record!;
  assert.equal(peer.holdsAtLeast(mine, ours), false, "the peer holds nothing of k");
  peer.offer({ ...rec, time: "9" }, 0);
  assert.equal(peer.holdsAtLeast(mine, ours), false, "an older record of k is not ours");
  peer.offer({ ...rec }, 0);
  assert.equal(peer.holdsAtLeast(mine, ours), true, "the very record (one shared body)");
  peer.offer({ ...rec, time: "11" }, 0);
  assert.equal(peer.holdsAtLeast(mine, ours), true, "a newer record of k");
  // The same tie rule as offer: the same report with a larger diff is older.
  const tie = new RecordStore(table);
  tie.offer({ ...rec, diff: "+0.2" }, 0);
  assert.equal(tie.holdsAtLeast(mine, ours), false, "a later receipt of the same report is older");
  // A store with a table of its own (another process's slots) never answers for ours.
  const apart = new RecordStore();
  apart.offer({ ...rec, time: "12" }, 0);
  assert.equal(apart.holdsAtLeast(mine, ours), false);
  // Plain fields (not a record this process's table handed out) are never vouched for.
  assert.equal(peer.holdsAtLeast({ ...rec, seq: 1, via: -1 }, ours), false);
});

Deno.test("store: newest is the table's newest record of a client, heldOf this store's own by its slot", () => {
  const table = new RecordTable();
  const a = new RecordStore(table);
  const b = new RecordStore(table);
  const rec = { origin: "Hill", diff: "+0.1", client: "k", location: "+1+1", time: "10" };
  assert.equal(a.newest("k"), undefined);
  a.offer(rec, -1);
  b.offer({ ...rec, time: "11" }, 0);
  assert.equal(a.newest("k")!.time, "11", "b's newer record, shared through the table");
  assert.equal(a.heldOf(a.newest("k")!)!.time, "10", "a's own record of k");
  assert.equal(b.heldOf(b.newest("k")!)!.time, "11");
  const c = new RecordStore(table);
  assert.equal(c.heldOf(c.newest("k")!), undefined, "c holds nothing of k");
  // A store with a table of its own: its own record is the newest it knows.
  const apart = new RecordStore();
  apart.offer(rec, -1);
  assert.equal(apart.newest("k")!.time, "10");
});

Deno.test("store: stores sharing a table decide new, stale and duplicate exactly as stores of their own (random offers)", () => {
  // Shared bodies let a store skip comparing times when offered the table's newest body; the
  // decisions must be those of stores that share nothing.
  let seed = 12345;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const table = new RecordTable();
  const shared = [0, 1, 2].map(() => new RecordStore(table));
  const apart = [0, 1, 2].map(() => new RecordStore());
  const pool: { origin: string; diff: string; client: string; location: string; time: string }[] =
    [];
  for (let i = 0; i < 20_000; i++) {
    // Half the offers are copies of an earlier record (a flood's relays), half fresh ones.
    const fields = pool.length > 0 && rand(2) === 0 ? { ...pool[rand(pool.length)] } : {
      origin: ["Hill", "Smith", "Jaquez"][rand(3)],
      diff: ["+0.1", "+0.2", "-0.1", "+0.10"][rand(4)],
      client: `c${rand(6)}`,
      location: ["+1+1", "+2+2"][rand(2)],
      time: ["10", "10.0", "11", "9.5", "12"][rand(5)],
    };
    if (rand(2) === 0) pool.push(fields);
    const s = rand(3);
    const via = rand(3) - 1;
    const a = shared[s].offer(fields, via).result;
    const b = apart[s].offer({ ...fields }, via).result;
    assert.equal(a, b, `offer ${i} to store ${s}: ${JSON.stringify(fields)}`);
  }
  for (let s = 0; s < 3; s++) {
    for (const r of apart[s].values()) {
      const mine = shared[s].get(r.client)!;
      assert.deepEqual(
        [mine.origin, mine.diff, mine.location, mine.time],
        [r.origin, r.diff, r.location, r.time],
      );
    }
  }
});
