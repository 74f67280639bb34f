/**
 * Review of `RecordStore.holdsAtLeast` (the in-process skip's one question) where a client's
 * slot in the shared record table is freed and handed to another client, and where a store holds
 * its own copy of a record (a body the table did not share).
 */

import assert from "node:assert/strict";
import { RecordStore } from "../servers/store.ts";
import { RecordTable } from "../servers/record_table.ts";

const base = { origin: "Hill", diff: "+0.1", location: "+1+1", time: "10" };

Deno.test("holdsAtLeast: a slot freed and reused by another client never vouches for the new client", () => {
  const table = new RecordTable();
  const a = new RecordStore(table);
  const b = new RecordStore(table);
  a.offer({ ...base, client: "k1" }, -1);
  b.offer({ ...base, client: "k1" }, 0);
  const slot = table.listed("k1")!.slot;
  // Both let go (restarts dispose of their stores): k1's slot is free.
  a.dispose();
  b.dispose();
  assert.equal(table.listed("k1"), undefined);
  const k2 = a.offer({ ...base, client: "k2", time: "5" }, -1).record!;
  assert.equal(table.listed("k2")!.slot, slot, "k2 took k1's slot");
  assert.equal(b.holdsAtLeast(k2, a), false, "b holds nothing in the reused slot");
  b.offer({ ...base, client: "k2", time: "4" }, 0);
  assert.equal(b.holdsAtLeast(k2, a), false, "an older record of k2");
  b.offer({ ...base, client: "k2", time: "5" }, 0);
  assert.equal(b.holdsAtLeast(k2, a), true);
});

Deno.test("holdsAtLeast: a stopped server's store keeps its client's slot, so it is never reused under it", () => {
  const table = new RecordTable();
  const a = new RecordStore(table);
  const stopped = new RecordStore(table);
  a.offer({ ...base, client: "k1" }, -1);
  stopped.offer({ ...base, client: "k1" }, 0);
  // a restarts (disposes); the stopped store still holds k1, so k1 stays listed in its slot.
  a.dispose();
  const slot = table.listed("k1")!.slot;
  const k2 = a.offer({ ...base, client: "k2" }, -1).record!;
  assert.notEqual(k2.seq, 0);
  assert.notEqual(table.listed("k2")!.slot, slot);
  assert.equal(stopped.holdsAtLeast(k2, a), false);
});

Deno.test("holdsAtLeast: a copy of the record in a body of its own (a store behind the others) counts as held", () => {
  const table = new RecordTable();
  const a = new RecordStore(table);
  const ahead = new RecordStore(table);
  const behind = new RecordStore(table);
  const old = a.offer({ ...base, client: "k", time: "10" }, -1).record!;
  // The table lists a newer body (ahead holds it): behind's copy of the old one is unshared.
  ahead.offer({ ...base, client: "k", time: "11" }, 0);
  behind.offer({ ...base, client: "k", time: "10" }, 0);
  assert.equal(behind.holdsAtLeast(old, a), true, "the same fields in another body");
  assert.equal(ahead.holdsAtLeast(old, a), true, "a newer record");
  const newer = ahead.get("k")!;
  assert.equal(behind.holdsAtLeast(newer, ahead), false);
  assert.equal(a.holdsAtLeast(newer, ahead), false);
});
