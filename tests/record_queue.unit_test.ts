/**
 * The record log's queue (servers/record_queue.ts): what a commit writes, kept as each record's
 * shared body and seq (no view), superseded records skipped when taken, a failed commit's records
 * put back before what came since.
 */

import assert from "node:assert/strict";
import { RecordQueue } from "../servers/record_queue.ts";
import { recordFields, RecordStore } from "../servers/store.ts";
import { recordAt as at } from "./_helpers/records.ts";

Deno.test("record queue: keeps each record's shared body and seq, skips what the store superseded, and puts a failed commit back first", () => {
  const store = new RecordStore();
  const q = new RecordQueue();
  const views = [["a", "1"], ["b", "1"], ["a", "2"]].map(([c, t]) =>
    store.offer(at(c, t), -1).record!
  );
  for (const v of views) q.push(v);
  // The body the store shares, not the view it handed out (the view may die young).
  assert.ok(q.fields.every((f, i) => f === recordFields(views[i]) && f !== views[i]));
  assert.deepEqual(q.seqs, [1, 2, 3]);
  const taken = q.take((f, seq) => store.supersededAt(f, seq));
  // a's first record was replaced before the commit: only its newest is written.
  assert.deepEqual(taken.seqs, [2, 3]);
  assert.deepEqual(taken.fields.map((f) => `${f.client} ${f.time}`), ["b 1", "a 2"]);
  assert.equal(q.length, 0);
  // The commit failed; meanwhile c was stored: the failed records go first, in their order.
  q.push(store.offer(at("c", "1"), -1).record!);
  q.requeue(taken);
  assert.deepEqual(q.seqs, [2, 3, 4]);
  assert.deepEqual(q.fields.map((f) => f.client), ["b", "a", "c"]);
  // Without a store to ask, everything is taken.
  assert.deepEqual(q.take().seqs, [2, 3, 4]);
});

Deno.test("record queue: a record of a store that let go of it (a restart) is not superseded", () => {
  const store = new RecordStore();
  const q = new RecordQueue();
  q.push(store.offer(at("kept", "1"), -1).record!);
  store.dispose();
  assert.deepEqual(q.take((f, seq) => store.supersededAt(f, seq)).seqs, [1]);
});
