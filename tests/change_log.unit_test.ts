/**
 * The change log's columns (servers/change_log.ts), and a store's log through them: reads in
 * sequence order, compaction keeps exactly the current entries, and a log does not grow with
 * the number of changes, only with the number of clients (counted, not timed).
 */
import assert from "node:assert/strict";
import { ChangeLog } from "../servers/change_log.ts";
import { RecordTable } from "../servers/record_table.ts";
import { RecordStore } from "../servers/store.ts";

const entries = (log: ChangeLog) =>
  Array.from({ length: log.length }, (_, i) => [log.slot(i), log.seq(i)]);

Deno.test("change log: appends past its first columns, finds the first entry after a seq, retains in order", () => {
  const log = new ChangeLog();
  for (let seq = 1; seq <= 1000; seq++) log.append(seq % 10, seq * 2); // seqs 2, 4, ..., 2000
  assert.equal(log.length, 1000);
  assert.equal(log.firstAfter(0), 0);
  assert.equal(log.firstAfter(2), 1);
  assert.equal(log.firstAfter(3), 1);
  assert.equal(log.firstAfter(1999), 999);
  assert.equal(log.firstAfter(2000), 1000);
  assert.deepEqual([log.slot(999), log.seq(999)], [0, 2000]);
  // Sequence numbers past 2^32 (a long-lived server) are kept exactly.
  log.append(3, 2 ** 40 + 1);
  assert.equal(log.seq(1000), 2 ** 40 + 1);
  // Keep the last change of each slot: ten entries, in sequence order.
  log.retain((slot, seq) => seq > 2000 ? slot === 3 : seq > 1980 && slot !== 3);
  assert.deepEqual(entries(log), [
    [1, 1982],
    [2, 1984],
    [4, 1988],
    [5, 1990],
    [6, 1992],
    [7, 1994],
    [8, 1996],
    [9, 1998],
    [0, 2000],
    [3, 2 ** 40 + 1],
  ]);
  assert.equal(log.firstAfter(1990), 4); // [6, 1992]
  log.clear();
  assert.equal(log.length, 0);
  assert.equal(log.firstAfter(5), 0);
});

Deno.test("change log: a store's log stays bounded by its clients however many changes it takes", () => {
  const store = new RecordStore(new RecordTable());
  const rec = (client: string, time: number) => ({
    origin: "Hill",
    diff: "+0.1",
    client,
    location: "+1+1",
    time: String(time),
  });
  let most = 0;
  for (let time = 1; time <= 2000; time++) {
    for (let c = 0; c < 5; c++) store.offer(rec(`c${c}`, time), -1);
    most = Math.max(most, store.changes);
  }
  assert.equal(store.headSeq, 10_000);
  // Compaction at twice the live records plus 64: never more than that, whatever the count.
  assert.ok(most <= 2 * 5 + 64 + 1, `log reached ${most} entries for 5 clients`);
  // Only the current records are read, in sequence order.
  assert.deepEqual(store.readAfter(0, 100).records.map((r) => r.seq), [
    9996,
    9997,
    9998,
    9999,
    10_000,
  ]);
  // Many clients, then each updated once: the superseded half goes at the next compaction.
  for (let c = 0; c < 3000; c++) store.offer(rec(`d${c}`, 1), -1);
  for (let c = 0; c < 3000; c++) store.offer(rec(`d${c}`, 2), -1);
  assert.ok(store.changes <= 2 * store.size + 64 + 1);
  const read = store.readAfter(0, 10_000).records;
  assert.equal(read.length, store.size);
  assert.ok(read.every((r) => r.client.startsWith("c") || r.time === "2"));
  store.dispose();
  assert.equal(store.changes, 0);
});
