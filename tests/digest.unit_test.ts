/**
 * Bucket digests (servers/digest.ts) and their `DIGEST` lines (servers/wire.ts): what two stores
 * compare when a second neighbour's catch-up stream is cut to what differs.
 */

import assert from "node:assert/strict";
import {
  bucketCount,
  BucketDigest,
  bucketOf,
  BUCKETS_PER_LINE,
  DigestReader,
  MAX_BUCKETS,
} from "../servers/digest.ts";
import { formatDigest, parseLinkLine } from "../servers/wire.ts";
import type { AtFields } from "../servers/record.ts";

function records(n: number): AtFields[] {
  return Array.from({ length: n }, (_, i) => ({
    origin: ["Hill", "Smith"][i % 2],
    diff: `+0.${i}`,
    client: `client${i}`,
    location: `+34.${i}-118.4`,
    time: `1700000000.${i}`,
  }));
}

function digest(rs: AtFields[], buckets = 64, salt = 0xabcdef01): BucketDigest {
  const d = new BucketDigest(buckets, salt);
  for (const r of rs) d.add(r);
  return d;
}

Deno.test("digest: the same records in any order give the same sums; every bucket matches", () => {
  const rs = records(500);
  const a = digest(rs);
  const b = digest([...rs].reverse());
  assert.deepEqual(a.sums, b.sums);
  assert.equal(a.matched(b, 7).count, 64);
  assert.equal(a.matched(b, 7).upTo, 7);
});

Deno.test("digest: a record one byte off in any field, or missing, unmatches its bucket only", () => {
  const rs = records(500);
  const base = digest(rs);
  const fields = ["origin", "diff", "client", "location", "time"] as const;
  for (const f of fields) {
    const changed = rs.map((r, i) => i === 42 ? { ...r, [f]: r[f] + "0" } : r);
    const m = base.matched(digest(changed), 0);
    const buckets = new Set([bucketOf(rs[42].client, 64, 0xabcdef01)]);
    if (f === "client") buckets.add(bucketOf(changed[42].client, 64, 0xabcdef01));
    assert.equal(m.count, 64 - buckets.size, f);
    assert.equal(m.covers(rs[42].client), false, f);
    for (const r of rs) {
      const b = bucketOf(r.client, 64, 0xabcdef01);
      if (!buckets.has(b)) assert.ok(m.covers(r.client), `${f}: ${r.client}`);
    }
  }
  // A field boundary moved: "ab c" is not "a bc".
  const moved = rs.map((r, i) =>
    i === 7 ? { ...r, origin: r.origin + "+", diff: r.diff.slice(1) } : r
  );
  assert.equal(base.matched(digest(moved), 0).covers(rs[7].client), false);
  assert.equal(base.matched(digest(rs.slice(1)), 0).covers(rs[0].client), false);
});

Deno.test("digest: the salt decides the buckets and the sums", () => {
  const rs = records(200);
  assert.notDeepEqual(digest(rs, 64, 1).sums, digest(rs, 64, 2).sums);
  const spread = new Set(rs.map((r) => bucketOf(r.client, 64, 1)));
  assert.ok(spread.size > 40, `200 clients in ${spread.size} of 64 buckets`);
});

Deno.test("digest: bucket counts are powers of two, ~64 records a bucket, within bounds", () => {
  assert.equal(bucketCount(0), 64);
  assert.equal(bucketCount(64 * 64), 64);
  assert.equal(bucketCount(64 * 64 + 1), 128);
  assert.equal(bucketCount(1_000_000), 16384);
  assert.equal(bucketCount(1e12), MAX_BUCKETS);
});

Deno.test("digest: DIGEST lines parse back into the same digest, in order only", () => {
  const d = digest(records(3000), 4096, 0x01020304);
  const text = formatDigest(d);
  const lines = text.split("\n").slice(0, -1);
  assert.equal(lines.length, 4096 / BUCKETS_PER_LINE);
  const reader = new DigestReader();
  for (const line of lines) {
    const m = parseLinkLine(line);
    assert.equal(m?.type, "DIGEST");
    if (m?.type === "DIGEST") assert.ok(reader.add(m));
  }
  assert.deepEqual(reader.take()?.sums, d.sums);
  assert.equal(reader.take(), undefined, "taken once");
  // Out of order, or another salt midway: refused.
  const parts = lines.map((l) => parseLinkLine(l)!).filter((m) => m.type === "DIGEST");
  const gap = new DigestReader();
  assert.ok(gap.add(parts[0]));
  assert.equal(gap.add(parts[2]), false);
  const salted = new DigestReader();
  assert.ok(salted.add(parts[0]));
  assert.equal(salted.add({ ...parts[1], salt: 5 }), false);
  assert.equal(new DigestReader().add(parts[1]), false, "no first part");
});

Deno.test("wire: malformed DIGEST, HOLD and GO lines are no messages", () => {
  const hex = "0".repeat(16);
  assert.equal(parseLinkLine(`DIGEST 0000000a 64 0 ${hex}`)?.type, "DIGEST");
  for (
    const line of [
      `DIGEST 0000000a 63 0 ${hex}`, // not a power of two
      `DIGEST 0000000a ${2 * MAX_BUCKETS} 0 ${hex}`, // too many buckets
      `DIGEST 0000000a 0 0 ${hex}`,
      `DIGEST 0000000a 64 64 ${hex}`, // past the end
      `DIGEST 0000000a 64 0 ${hex}0`, // not whole buckets
      `DIGEST 0000000a 64 0 ${hex.toUpperCase().replace(/0/g, "G")}`,
      `DIGEST a 64 0 ${hex}`, // salt not 8 hex digits
      `DIGEST 0000000a 64 0`,
      "HOLD now",
      "GO 1",
    ]
  ) {
    assert.equal(parseLinkLine(line), undefined, line);
  }
  assert.equal(parseLinkLine("HOLD")?.type, "HOLD");
  assert.equal(parseLinkLine("GO")?.type, "GO");
});
