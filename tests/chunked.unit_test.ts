/**
 * Chunked arrays (servers/chunked.ts): values by index across chunk edges, defaults where
 * nothing was set, growth without moving what is there, truncation that lets chunks go; and the
 * change log over them across many chunks, with a retain that shrinks it and appends after.
 */
import assert from "node:assert/strict";
import { CHUNK, ChunkedArray, ChunkedNumbers } from "../servers/chunked.ts";
import { ChangeLog } from "../servers/change_log.ts";

Deno.test("chunked array: values across chunk edges, undefined elsewhere, truncate drops chunks", () => {
  const a = new ChunkedArray<{ n: number }>();
  assert.equal(a.capacity, 0);
  assert.equal(a.get(0), undefined);
  const at = [0, CHUNK - 1, CHUNK, 3 * CHUNK + 5];
  const objects = at.map((n) => ({ n }));
  at.forEach((i, k) => a.set(i, objects[k]));
  assert.equal(a.capacity, 4 * CHUNK);
  at.forEach((i, k) => assert.equal(a.get(i), objects[k])); // the very objects: nothing moved
  assert.equal(a.get(1), undefined);
  assert.equal(a.get(2 * CHUNK), undefined); // a chunk made on the way, empty
  assert.equal(a.get(10 * CHUNK), undefined); // past the end
  a.set(CHUNK, undefined);
  assert.equal(a.get(CHUNK), undefined);
  a.truncate(CHUNK + 1); // the first two chunks stay
  assert.equal(a.capacity, 2 * CHUNK);
  assert.equal(a.get(CHUNK - 1), objects[1]);
  assert.equal(a.get(3 * CHUNK + 5), undefined);
  a.truncate(0);
  assert.equal(a.capacity, 0);
});

Deno.test("chunked numbers: exact values of their kind, 0 where unset, or() sets bits", () => {
  const seqs = new ChunkedNumbers(Float64Array);
  const bits = new ChunkedNumbers(Int32Array);
  seqs.set(2 * CHUNK + 7, 2 ** 40 + 1);
  assert.equal(seqs.get(2 * CHUNK + 7), 2 ** 40 + 1);
  assert.equal(seqs.get(7), 0);
  assert.equal(seqs.get(100 * CHUNK), 0);
  assert.equal(seqs.capacity, 3 * CHUNK);
  bits.or(5, 0b01);
  bits.or(5, 0b10);
  assert.equal(bits.get(5), 0b11);
  bits.set(6, -1); // an Int32 column keeps 32-bit values
  assert.equal(bits.get(6), -1);
  bits.truncate(0);
  assert.equal(bits.get(5), 0);
});

Deno.test("change log over chunks: 3 chunks' worth of entries, a retain to a few, appends after", () => {
  const log = new ChangeLog();
  const n = 3 * CHUNK + 100;
  for (let seq = 1; seq <= n; seq++) log.append(seq % 1000, seq);
  assert.equal(log.length, n);
  assert.equal(log.firstAfter(CHUNK), CHUNK); // a binary search across chunk edges
  assert.equal(log.seq(2 * CHUNK), 2 * CHUNK + 1);
  // The last change of each of the 1,000 slots stays, in sequence order.
  log.retain((_slot, seq) => seq > n - 1000);
  assert.equal(log.length, 1000);
  assert.equal(log.seq(0), n - 999);
  assert.equal(log.seq(999), n);
  log.append(5, n + 1);
  assert.deepEqual([log.length, log.slot(1000), log.seq(1000)], [1001, 5, n + 1]);
  assert.equal(log.firstAfter(n), 1000);
});
