/**
 * The shared record table (servers/record_table.ts) through real stores: byte-identical records
 * share one body, a store only ever sees the record it was offered, and replaced or dropped
 * records are not kept by the table (counted, not timed).
 */
import assert from "node:assert/strict";
import { formatAt } from "../servers/protocol.ts";
import { type AtFields, compareRecords } from "../servers/record.ts";
import { CLIENT_OVERHEAD, recordBudget, RecordTable } from "../servers/record_table.ts";
import { RecordStore } from "../servers/store.ts";

const rec = (client: string, time: string, more: Partial<AtFields> = {}): AtFields => ({
  origin: "Hill",
  diff: "+0.100000000",
  client,
  location: "+34.068930-118.445127",
  time,
  ...more,
});

Deno.test("record table: stores offered the same bytes share one body, each with its own seq and via", () => {
  const table = new RecordTable();
  const stores = [0, 1, 2].map(() => new RecordStore(table));
  stores[1].offer(rec("warm-up", "1"), -1); // so sequence numbers differ between stores
  for (const [i, s] of stores.entries()) {
    // A fresh object each time, as a parsed line is: equal bytes, not the same object.
    assert.equal(s.offer(rec("k", "1700000000.5"), i - 1).result, "new");
  }
  assert.equal(table.size, 2);
  assert.equal(table.listed("k")!.refs, 3);
  assert.deepEqual(stores.map((s) => s.get("k")!.seq), [1, 2, 1]);
  assert.deepEqual(stores.map((s) => s.get("k")!.via), [-1, 0, 1]);
  for (const s of stores) assert.equal(formatAt(s.get("k")!), formatAt(rec("k", "1700000000.5")));
  // Serialised (events, snapshots) as the plain record.
  assert.deepEqual(JSON.parse(JSON.stringify(stores[2].get("k"))), {
    ...rec("k", "1700000000.5"),
    seq: 1,
    via: 1,
  });
});

Deno.test("record table: a store is only ever handed the record it was offered (random offers, three stores)", () => {
  // A few clients, records that tie on time but differ elsewhere, offered in random orders: each
  // store must end with exactly what a store of its own would hold.
  let seed = 7;
  const rand = (n: number) => (seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff) % n;
  const pool: AtFields[] = [];
  for (const client of ["a", "b", "c"]) {
    for (const time of ["5", "5.0", "6", "7"]) {
      for (const origin of ["Hill", "Smith"]) pool.push(rec(client, time, { origin }));
      pool.push(rec(client, time, { location: "+1+2" }));
    }
  }
  const table = new RecordTable();
  const shared = [0, 1, 2].map(() => new RecordStore(table));
  const alone = [0, 1, 2].map(() => new RecordStore());
  for (let step = 0; step < 3000; step++) {
    const i = rand(3);
    const r = { ...pool[rand(pool.length)] };
    assert.equal(shared[i].offer(r, -1).result, alone[i].offer({ ...r }, -1).result);
    for (const client of ["a", "b", "c"]) {
      for (let k = 0; k < 3; k++) {
        const got = shared[k].get(client);
        const want = alone[k].get(client);
        assert.equal(got && formatAt(got), want && formatAt(want), `step ${step} store ${k}`);
      }
      // The table lists the client while a store holds it: counted exactly, listed no older
      // than any store's record.
      const listed = table.listed(client);
      const held = shared.map((s) => s.get(client)).filter((x) => x !== undefined);
      assert.equal(listed?.refs ?? 0, held.length);
      if (listed !== undefined) assert.ok(held.every((h) => compareRecords(h, listed) <= 0));
    }
  }
  for (const s of shared) s.dispose();
  assert.equal(table.size, 0);
});

Deno.test("record table: replaced and dropped records are not kept (counts)", () => {
  const table = new RecordTable();
  const stores = [0, 1, 2].map(() => new RecordStore(table));
  const clients = 500;
  for (let round = 1; round <= 20; round++) {
    for (let c = 0; c < clients; c++) {
      for (const s of stores) s.offer(rec(`c${c}`, String(round)), -1);
    }
    // One listed body per client, held by all three; the 19 it replaced are not listed.
    assert.equal(table.size, clients);
  }
  for (let c = 0; c < clients; c++) assert.equal(table.listed(`c${c}`)!.refs, 3);
  // A store that restarts lets go of its records: the others still hold theirs.
  stores[0].dispose();
  assert.equal(stores[0].size, 0);
  assert.equal(table.size, clients);
  assert.equal(table.listed("c0")!.refs, 2);
  stores[1].dispose();
  stores[2].dispose();
  assert.equal(table.size, 0);
  // Slots of forgotten clients are reused: stores that come and go with other clients each time
  // do not grow the arrays every store indexes by slot.
  for (let round = 0; round < 20; round++) {
    const s = new RecordStore(table);
    for (let c = 0; c < clients; c++) s.offer(rec(`r${round}-${c}`, "1"), -1);
    assert.equal(s.size, clients);
    s.dispose();
  }
  assert.equal(table.size, 0);
  assert.equal(table.slots, clients);
});

Deno.test("record table: a stored record is byte for byte what was offered (binary, long fields)", () => {
  const table = new RecordTable();
  const a = new RecordStore(table);
  const b = new RecordStore(table);
  let all = "";
  for (let c = 33; c < 256; c++) all += String.fromCharCode(c);
  const client = `\x01\x7f${all}\xff`;
  const r = rec(client, "1700000000.123456789123456789", { origin: "Hill\x80\xfe" });
  const line = `R 1 ${r.origin} ${r.diff} ${r.client} ${r.location} ${r.time}`;
  const [, , origin, diff, cl, location, time] = line.split(" ");
  a.offer({ origin, diff, client: cl, location, time }, -1);
  b.offer({ ...r }, -1);
  for (const s of [a, b]) {
    const got = s.get(client)!;
    assert.equal(formatAt(got), formatAt(r));
    assert.equal(got.client, client);
    assert.equal(got.origin, r.origin);
  }
  assert.equal(table.listed(client)!.refs, 2);
  // Restored records (from the record log) join the same body.
  const c = new RecordStore(table);
  c.restore({ ...r, seq: 9, via: -1 });
  assert.equal(table.listed(client)!.refs, 3);
  assert.equal(c.get(client)!.seq, 9);
  c.restore({ ...r, time: "1700000001", seq: 10, via: -1 });
  assert.equal(table.listed(client)!.refs, 3);
  assert.equal(table.listed(client)!.time, "1700000001");
  assert.equal(a.get(client)!.time, r.time);
  assert.equal(c.get(client)!.time, "1700000001");
});

Deno.test("record table: a store's columns answer for the current record only (views, heldBy, values, recent)", () => {
  const table = new RecordTable();
  const s = new RecordStore(table);
  const other = new RecordStore(table);
  const first = s.offer(rec("k", "1"), 0).record!; // seq 1, came on link 0
  s.offer(rec("j", "1"), -1); // seq 2
  // A view handed out before the client's record was replaced stays what it was...
  const newer = s.offer(rec("k", "2"), 1).record!; // seq 3, came on link 1
  assert.deepEqual([first.seq, first.via, first.time], [1, 0, "1"]);
  assert.deepEqual([newer.seq, newer.via, newer.time], [3, 1, "2"]);
  // ...and a link that sent that old record again says nothing about the new one.
  s.heldBy(first, 2);
  assert.deepEqual(s.readAfter(0, 10, 2).records.map((r) => r.seq), [2, 3]);
  s.heldBy(s.get("k")!, 2);
  assert.deepEqual(s.readAfter(0, 10, 2).records.map((r) => r.seq), [2]);
  assert.equal(s.get("k")!.held, (1 << 1) | (1 << 2));
  // Another store's records of the same clients are its own.
  other.offer(rec("k", "1"), -1);
  assert.deepEqual(other.readAfter(0, 10, 2).records.map((r) => r.time), ["1"]);
  assert.equal(s.get("k")!.time, "2");
  assert.deepEqual([...s.values()].map((r) => r.seq).sort(), [2, 3]);
  assert.deepEqual(s.recent(10).map((r) => r.seq), [3, 2]);
  assert.equal(s.size, 2);
  // A forgotten client's slot, reused for another, is not mistaken for the old record.
  other.dispose();
  s.dispose();
  assert.equal(table.size, 0);
  const again = new RecordStore(table);
  again.offer(rec("z", "1"), -1);
  assert.equal(again.get("k"), undefined);
  assert.equal(again.get("z")!.seq, 1);
  assert.deepEqual(again.readAfter(0, 10).records.map((r) => r.client), ["z"]);
});

Deno.test("record table: its client index finds exactly the clients some store holds (churn, growth, removals)", () => {
  // The index is an open-addressing table with removals that shift entries back: clients come
  // and go at random (a few hundred at a time, so the index stays small and its probe runs wrap
  // around and are cut by removals), then grow past several doublings; every client the model
  // holds must be found with its own body, and no other.
  let seed = 11;
  const rand = (n: number) => (seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff) % n;
  const table = new RecordTable();
  const held = new Map<string, ReturnType<RecordTable["hold"]>>();
  const pool = (n: number) => `client-${n}`;
  const check = (upTo: number) => {
    assert.equal(table.size, held.size);
    for (let n = 0; n < upTo; n++) {
      const body = table.listed(pool(n));
      const want = held.get(pool(n));
      assert.equal(body, want, pool(n));
      if (body !== undefined) assert.equal(body.client, pool(n));
    }
  };
  for (let step = 0; step < 20_000; step++) {
    const c = pool(rand(900));
    const body = held.get(c);
    if (body === undefined) held.set(c, table.hold(rec(c, "1")));
    else if (rand(2) === 0) {
      table.release(body);
      held.delete(c);
    } else {
      // A newer record of a held client: listed in the old one's place, same slot.
      table.release(body);
      const newer = table.hold(rec(c, String(step + 2)));
      // Held by nobody now but the new one: a new listing (the slot may be reused).
      held.set(c, newer);
    }
    if (step % 2_000 === 0) check(900);
  }
  check(900);
  for (let n = 0; n < 20_000; n++) {
    const c = pool(n);
    if (!held.has(c)) held.set(c, table.hold(rec(c, "1")));
  }
  check(20_000);
  // Byte-identical records are one body; a newer one replaces the listing in place.
  const a = table.hold(rec(pool(5), "1"));
  assert.equal(a, held.get(pool(5)));
  const b = table.hold(rec(pool(5), "99999"));
  assert.equal(table.listed(pool(5)), b);
  assert.equal(b.slot, a.slot);
  for (const body of held.values()) table.release(body);
  table.release(a);
  table.release(b);
  assert.equal(table.size, 0);
  for (let n = 0; n < 20_000; n++) assert.equal(table.listed(pool(n)), undefined);
});

const textOf = (r: AtFields) => r.diff.length + r.client.length + r.location.length + r.time.length;

Deno.test("record budget: the table counts each held body's text once however many stores hold it, plus each client's overhead", () => {
  const table = new RecordTable();
  const stores = [0, 1, 2].map(() => new RecordStore(table));
  const a = rec("a", "1");
  for (const s of stores) s.offer(a, -1);
  assert.equal(table.bytes, CLIENT_OVERHEAD + textOf(a));
  // A newer, longer record of the same client at one store: counted beside the old one, which
  // the other stores still hold, until they too let go of it.
  const longer = rec("a", "2", { location: "+34.0689301234-118.4451271234" });
  stores[0].offer(longer, -1);
  assert.equal(table.bytes, CLIENT_OVERHEAD + textOf(a) + textOf(longer));
  for (const s of stores.slice(1)) s.offer(longer, 0);
  assert.equal(table.bytes, CLIENT_OVERHEAD + textOf(longer));
  const b = rec("bb", "1");
  stores[2].offer(b, -1);
  assert.equal(table.bytes, 2 * CLIENT_OVERHEAD + textOf(longer) + textOf(b));
  // Let go by every store: nothing counted for it.
  for (const s of stores) s.dispose();
  assert.equal(table.bytes, 0);
  assert.equal(table.size, 0);
});

Deno.test("record budget: past the soft limit a client's new client is refused, a known client still updates, a peer's record fits until the hard limit", () => {
  const one = CLIENT_OVERHEAD + textOf(rec("c0", "1"));
  // Room for three clients from clients; a quarter more (one client) from peers.
  const table = new RecordTable(recordBudget(4 * one - 1));
  assert.equal(table.budget.hard, Math.floor((4 * one - 1) * 1.25));
  const origin = new RecordStore(table);
  for (let i = 0; i < 3; i++) assert.equal(origin.offer(rec(`c${i}`, "1"), -1).result, "new");
  assert.equal(origin.offer(rec("c3", "1"), -1).result, "full");
  assert.equal(origin.get("c3"), undefined);
  // A known client keeps updating, at the same size or smaller.
  assert.equal(origin.offer(rec("c0", "2"), -1).result, "new");
  assert.equal(
    origin.offer(rec("c1", "2", { location: "+34.068930-118.445128" }), -1).result,
    "new",
  );
  assert.equal(origin.offer(rec("c1", "3", { location: "+1+2" }), -1).result, "new");
  assert.equal(origin.offer(rec("c1", "4"), -1).result, "new");
  // ...but not to a record that grows past the budget.
  const fat = rec("c2", "2", { location: "+34." + "0".repeat(4 * one) + "-118.5" });
  assert.equal(origin.offer(fat, -1).result, "full");
  assert.equal(origin.get("c2")!.time, "1");
  // A peer's record of a new client: within the margin.
  assert.equal(origin.offer(rec("p0", "1"), 0).result, "new");
  assert.equal(origin.offer(rec("p1", "1"), 0).result, "full");
  assert.ok(table.bytes <= table.budget.hard);
  // Another store of the process takes what is listed already, whatever the budget.
  const other = new RecordStore(table);
  for (const c of ["c0", "c1", "c2", "p0"]) {
    assert.equal(other.offer(origin.get(c)!, 1).result, "new", c);
  }
  // Stale and duplicate records are what they were, full or not.
  assert.equal(origin.offer(rec("c0", "1"), -1).result, "stale");
  assert.equal(origin.offer(origin.get("c0")!, -1).result, "duplicate");
});

Deno.test("record budget: a body a store behind still holds stays counted, so a client that moves on cannot free the budget while the old bytes stay", () => {
  // Found by a review: a stopped server (or a cut link) kept the fat records it had, the client
  // moved on with small ones at another server, and only the newest body was counted: 1,881 fat
  // clients (108 MiB held) fitted in a 1 MiB budget, and in `start` that ended the process.
  const table = new RecordTable(recordBudget(1024 * 1024));
  const ahead = new RecordStore(table);
  const behind = new RecordStore(table);
  const fat = "+34." + "0".repeat(60_000) + "-118.5";
  let accepted = 0;
  for (let i = 0; i < 100; i++) {
    const big = rec(`c${i}`, "1", { location: fat });
    if (ahead.offer(big, -1).result !== "new") break;
    accepted++;
    assert.equal(behind.offer(big, 0).result, "new");
    assert.equal(ahead.offer(rec(`c${i}`, "2"), -1).result, "new");
  }
  let held = 0;
  for (const r of behind.values()) held += textOf(r);
  assert.ok(
    held <= table.budget.soft,
    `${accepted} fat clients: ${held} bytes held by the store behind`,
  );
  assert.ok(table.bytes >= held, `counted ${table.bytes} of ${held}`);
  // Once the store behind lets go, what it held is no longer counted.
  behind.dispose();
  let live = 0;
  for (const r of ahead.values()) live += textOf(r);
  assert.equal(table.bytes, accepted * CLIENT_OVERHEAD + live);
});
