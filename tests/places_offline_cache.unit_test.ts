/**
 * The offline Places index kept on disk (servers/places/offline_cache.ts): read back, it is the
 * freshly built index, array for array, and answers every query alike; a file that is damaged,
 * of another layout, a symlink or writable by others is refused (the caller then rebuilds it:
 * tests/places_offline_cache.proc_test.ts).
 */

import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import KDBush from "kdbush";
import {
  buildOfflineIndex,
  GEONAMES_ATTRIBUTION,
  openIndex,
  searchIndex,
  searchOffline,
} from "../servers/places/offline.ts";
import type { BuiltIndex } from "../servers/places/offline.ts";
import {
  CACHE_LAYOUT,
  cacheFileName,
  decodeIndex,
  encodeIndex,
  readIndexCache,
  sweepIndexCache,
  writeIndexCache,
} from "../servers/places/offline_cache.ts";
import { formatLegacyJson } from "../servers/places/legacy_json.ts";
import type { LegacyPlace } from "../servers/places/provider.ts";

let builtOnce: Promise<BuiltIndex> | undefined;
/** One fresh build for the whole file (a second of CPU each). */
function built(): Promise<BuiltIndex> {
  return builtOnce ??= buildOfflineIndex();
}

/** A valid cache file of a fresh build, in a new temp dir. */
async function validFile(): Promise<{ dir: string; path: string; bytes: Uint8Array }> {
  const dir = await Deno.makeTempDir({ prefix: "places-cache-" });
  await writeIndexCache(dir, "index.bin", await built());
  const path = `${dir}/index.bin`;
  return { dir, path, bytes: await Deno.readFile(path) };
}

/**
 * Asserts two arrays hold the same bytes, naming the first difference (a deepEqual of 135k
 * elements that differ would print a diff of gigabytes).
 */
function sameBytes(
  got: ArrayBufferView | ArrayBuffer,
  want: ArrayBufferView | ArrayBuffer,
  what: string,
) {
  const bytes = (a: ArrayBufferView | ArrayBuffer) =>
    a instanceof ArrayBuffer
      ? new Uint8Array(a)
      : new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const [g, w] = [bytes(got), bytes(want)];
  assert.equal(g.length, w.length, `${what}: ${g.length} bytes, not ${w.length}`);
  const at = g.findIndex((b, i) => b !== w[i]);
  assert.equal(at, -1, `${what}: differs at byte ${at}`);
}

/** The legacy JSON a WHATSAT would print for these results. */
function whatsatJson(results: LegacyPlace[]): string {
  return formatLegacyJson(
    results.length === 0
      ? { html_attributions: [], results: [], status: "ZERO_RESULTS" }
      : { html_attributions: [GEONAMES_ATTRIBUTION], results, status: "OK" },
  );
}

/** Deterministic pseudo-random numbers (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("places cache: read back, every array equals a fresh build; 400 random WHATSATs answer the same JSON", async () => {
  const fresh = await built();
  const { dir, path } = await validFile();
  try {
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    const cached = await readIndexCache(path);
    assert.ok(cached !== undefined, "a valid cache file was refused");
    sameBytes(cached.tree, fresh.tree, "tree");
    for (const key of Object.keys(fresh.places) as (keyof BuiltIndex["places"])[]) {
      assert.equal(cached.places[key].constructor, fresh.places[key].constructor);
      assert.equal(cached.places[key].length, fresh.places[key].length);
      sameBytes(cached.places[key], fresh.places[key], `places.${key}`);
    }
    assert.ok(cached.places.lng.length > 100_000);

    // The shared index (built in this process without a cache) against the one read back.
    const index = openIndex(cached);
    const next = random(131);
    let nonEmpty = 0;
    for (let i = 0; i < 400; i++) {
      // Half near a real place (dense answers), half anywhere (mostly empty ones).
      const at = Math.floor(next() * fresh.places.lng.length);
      const near = i % 2 === 0;
      const query = {
        lat: near
          ? Math.max(-90, Math.min(90, fresh.places.lat[at] + next() - 0.5))
          : next() * 180 - 90,
        lng: near ? fresh.places.lng[at] + next() - 0.5 : next() * 360 - 180,
        radiusKm: 0.5 + next() * 50,
        bound: 1 + Math.floor(next() * 20),
      };
      const want = whatsatJson(await searchOffline(query));
      const got = whatsatJson(searchIndex(index, query));
      assert.equal(got, want, `query ${JSON.stringify(query)}`);
      if (want.includes('"OK"')) nonEmpty++;
    }
    assert.ok(nonEmpty >= 150, `only ${nonEmpty} of 400 queries found places`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("places cache: the file name hashes the layout, the data set and the excluded codes", async () => {
  const name = await cacheFileName(["PPLQ", "PPLW", "PPLH"]);
  assert.match(name, /^places-index-[0-9a-f]{12}\.bin$/);
  assert.equal(await cacheFileName(["PPLH", "PPLQ", "PPLW"]), name);
  assert.notEqual(await cacheFileName(["PPLQ", "PPLW"]), name);
  assert.equal(CACHE_LAYOUT, 1);
});

/** Rewrites the header's CRC so only the deeper checks can refuse the bytes. */
function resealed(bytes: Uint8Array): Uint8Array {
  new DataView(bytes.buffer).setUint32(24, crc32(bytes.subarray(40)), true);
  return bytes;
}

Deno.test("places cache: damaged, truncated, wrong-version, oversized-count and ill-formed files are refused", async () => {
  const good = encodeIndex(await built());
  const copy = () => good.slice();
  const n = new DataView(good.buffer).getUint32(12, true);
  assert.ok(decodeIndex(copy().buffer) !== undefined, "the valid bytes must decode");

  const cases: [string, Uint8Array][] = [];
  const flipped = copy();
  flipped[flipped.length - 7] ^= 0x20; // a letter of a place name: only the CRC sees it
  cases.push(["one payload bit flipped", flipped]);
  cases.push(["truncated", good.slice(0, good.length - 100)]);
  cases.push(["one byte longer", Uint8Array.from([...good, 0])]);
  cases.push(["header only", good.slice(0, 40)]);
  cases.push(["empty", new Uint8Array(0)]);
  const version = copy();
  new DataView(version.buffer).setUint32(8, CACHE_LAYOUT + 1, true);
  cases.push(["another layout version", version]);
  const magic = copy();
  magic[0] ^= 1;
  cases.push(["another magic", magic]);
  for (const [field, value] of [[12, n + 1], [12, 0xffffffff], [16, 0xfffffff0], [20, 1 << 30]]) {
    const lie = copy();
    new DataView(lie.buffer).setUint32(field, value, true);
    cases.push([`header field ${field} = ${value}`, lie]);
  }
  // Well sealed (a valid CRC) but not well formed: a tree id past the places, text out of order.
  const tree = KDBush.from(good.buffer.slice(40 + 32 * n));
  const idsAt = 40 + 32 * n + 8; // KDBush's 8-byte header, then its ids
  const badId = copy();
  new DataView(badId.buffer).setUint32(idsAt, n + 5, true);
  assert.equal(tree.ids.BYTES_PER_ELEMENT, 4);
  cases.push(["a tree id past the places (CRC resealed)", resealed(badId)]);
  const treeBytes = new DataView(good.buffer).getUint32(16, true);
  const textAtAt = Math.ceil((40 + 32 * n + treeBytes) / 8) * 8;
  const badText = copy();
  new DataView(badText.buffer).setUint32(textAtAt + 4 * 10, 0xffffff, true);
  cases.push(["text offsets out of order (CRC resealed)", resealed(badText)]);

  for (const [what, bytes] of cases) {
    // An own buffer at offset 0, as readIndexCache reads it.
    assert.ok(decodeIndex(bytes.slice().buffer) === undefined, `${what}: accepted`);
  }

  // And from disk: each is refused by readIndexCache too.
  const dir = await Deno.makeTempDir({ prefix: "places-cache-" });
  try {
    for (const [what, bytes] of cases) {
      await Deno.writeFile(`${dir}/f.bin`, bytes, { mode: 0o600 });
      assert.ok(await readIndexCache(`${dir}/f.bin`) === undefined, `${what}: read`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("places cache: a symlink, or a file others may write, is not read; writing replaces a symlink, not its target", async () => {
  const { dir, path, bytes } = await validFile();
  try {
    const target = `${dir}/elsewhere.bin`;
    await Deno.rename(path, target);
    await Deno.symlink(target, path);
    assert.ok(await readIndexCache(target) !== undefined);
    assert.ok(await readIndexCache(path) === undefined, "read through a symlink");

    // Rewriting the cache renames a new file over the link: the target stays as it was.
    await Deno.writeFile(target, new Uint8Array([1, 2, 3]));
    await writeIndexCache(dir, "index.bin", await built());
    assert.ok(!(await Deno.lstat(path)).isSymlink);
    sameBytes(await Deno.readFile(target), new Uint8Array([1, 2, 3]), "the symlink's target");
    sameBytes(await Deno.readFile(path), bytes, "the rewritten file");

    await Deno.chmod(path, 0o620);
    assert.ok(await readIndexCache(path) === undefined, "read a group-writable file");
    await Deno.chmod(path, 0o600);
    assert.ok(await readIndexCache(path) !== undefined);
    assert.ok(await readIndexCache(`${dir}/missing.bin`) === undefined, "read a missing file");
    assert.ok(await readIndexCache(dir) === undefined, "read a directory");
    // No temp files left behind.
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names.sort(), ["elsewhere.bin", "index.bin"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const NOBODY = 65534;

Deno.test("places cache: a well-formed file another user owns (0644, in a sticky shared dir) is not read", async () => {
  const dir = await Deno.makeTempDir({ prefix: "adv9-shared-" });
  try {
    await Deno.chmod(dir, 0o1777);
    const built = await buildOfflineIndex();
    const bytes = encodeIndex(built);
    // A forged place name, same length, CRC recomputed: a well-formed lie.
    const textStart = bytes.length - built.places.text.byteLength;
    bytes.set(new TextEncoder().encode("EVIL"), textStart);
    new DataView(bytes.buffer).setUint32(24, crc32(bytes.subarray(40)), true);
    const path = `${dir}/places-index-planted.bin`;
    await Deno.writeFile(path, bytes, { mode: 0o644 });
    await Deno.chmod(path, 0o644);
    await Deno.chown(path, NOBODY, NOBODY);
    assert.equal((await Deno.lstat(path)).uid, NOBODY);
    assert.notEqual(Deno.uid(), NOBODY);

    const read = await readIndexCache(path);
    const name = read === undefined
      ? ""
      : new TextDecoder().decode(read.places.text.subarray(0, 4));
    // assert.ok, not equal: a failed equal would print 135k-element arrays (gigabytes).
    assert.ok(
      read === undefined,
      `read another user's file: the first place is now named "${name}"`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("places cache: the sweep removes killed writers' temp files and other builds' old indexes, nothing else", async () => {
  const dir = await Deno.makeTempDir({ prefix: "places-cache-sweep-" });
  try {
    const keep = "places-index-0123456789ab.bin";
    const uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    const hour = 3600_000;
    const files = {
      keep,
      staleTemp: `${keep}.${uuid}.tmp`,
      freshTemp: `${keep}.${uuid.replace("0f", "1f")}.tmp`,
      otherStaleTemp: `places-index-ba9876543210.bin.${uuid}.tmp`,
      otherOld: "places-index-ba9876543210.bin",
      otherRecent: "places-index-cccccccccccc.bin",
      unrelatedOld: "places-index-notours.bin",
      userFile: "records.log",
    };
    const now = Date.now();
    const ages: Record<string, number> = {
      keep: 48 * hour,
      staleTemp: 5 * 60_000,
      freshTemp: 1_000,
      otherStaleTemp: 5 * 60_000,
      otherOld: 48 * hour,
      otherRecent: hour,
      unrelatedOld: 48 * hour,
      userFile: 48 * hour,
    };
    for (const [what, name] of Object.entries(files)) {
      await Deno.writeFile(`${dir}/${name}`, new Uint8Array(8));
      const at = new Date(now - ages[what]);
      await Deno.utime(`${dir}/${name}`, at, at);
    }
    // A symlink named like a stale temp file, pointing at a file outside: neither is touched.
    const outside = await Deno.makeTempFile();
    const link = `places-index-dddddddddddd.bin.${uuid}.tmp`;
    await Deno.symlink(outside, `${dir}/${link}`);

    await sweepIndexCache(dir, keep, now);
    const left = [];
    for await (const entry of Deno.readDir(dir)) left.push(entry.name);
    assert.deepEqual(
      left.sort(),
      [files.keep, files.freshTemp, files.otherRecent, files.unrelatedOld, files.userFile, link]
        .sort(),
    );
    await Deno.stat(outside);
    await Deno.remove(outside);

    // A dir that is gone, or not a dir: no throw.
    await sweepIndexCache(`${dir}/missing`, keep, now);
    await sweepIndexCache(`${dir}/${files.userFile}`, keep, now);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
