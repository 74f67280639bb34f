/**
 * Deno KV persistence (servers/persist.ts) on its own: records round-trip byte for byte, data
 * written in the earlier array layout still loads, and an unreadable value is skipped.
 */

import assert from "node:assert/strict";
import { openKvPersistence } from "../servers/persist.ts";
import { RecordStore, type StoredRecord } from "../servers/store.ts";

function record(client: string, seq: number, over: Partial<StoredRecord> = {}): StoredRecord {
  return {
    origin: "Hill",
    diff: "+0.263873386",
    client,
    location: "+34.068930-118.445127",
    time: "1621464827.959498503",
    seq,
    via: -1,
    ...over,
  };
}

Deno.test("persist: records round-trip byte for byte, in change order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = await openKvPersistence(dir, "Hill");
    const written = [
      record("kiwi.cs.ucla.edu", 1),
      record("k\xc3\xa9\xff\x01", 2, { origin: "S\xe9rver", time: "00012.34000" }),
      record("z", 3, { diff: "-1.000000000", location: "-90+180.0" }),
    ];
    await p.load(new RecordStore(), []);
    for (const r of written) p.saved(r);
    await p.close();

    const again = await openKvPersistence(dir, "Hill");
    const store = new RecordStore();
    await again.load(store, []);
    await again.close();
    assert.equal(store.size, 3);
    for (const r of written) {
      const got = store.get(r.client)!;
      assert.deepEqual(
        [got.origin, got.diff, got.client, got.location, got.time],
        [r.origin, r.diff, r.client, r.location, r.time],
      );
    }
    assert.deepEqual(store.readAfter(0, 10).records.map((r) => r.client), [
      "kiwi.cs.ucla.edu",
      "k\xc3\xa9\xff\x01",
      "z",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("persist: the earlier array layout still loads; an unreadable value is skipped", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const kv = await Deno.openKv(`${dir}/Hill.kv`);
    await kv.set(["meta", "epoch"], "e0123456");
    await kv.set(["r", "old"], ["Smith", "+0.5", "+1+2", "5", 1]);
    await kv.set(["r", "junk"], { not: "a record" });
    await kv.set(["r", "null"], null);
    await kv.set(["r", "text"], "abcde");
    kv.close();

    const p = await openKvPersistence(dir, "Hill");
    const store = new RecordStore();
    await p.load(store, []);
    await p.close();
    assert.equal(store.epoch, "e0123456");
    assert.equal(store.size, 1);
    const old = store.get("old")!;
    assert.deepEqual([old.origin, old.diff, old.location, old.time], [
      "Smith",
      "+0.5",
      "+1+2",
      "5",
    ]);
    assert.equal(store.get("junk"), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
