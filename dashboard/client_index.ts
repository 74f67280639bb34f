/**
 * The dashboard's index of every client in the herd: the newest record of each (newest-wins by
 * the core's `compareRecords`), its position projected onto the map, and the IDs in sorted order.
 * It answers what a million clients make too big to send to a browser: the exact total, the map's
 * clusters for one zoom level and view, and a bounded prefix search.
 *
 * Fed by `location.accepted` events and seeded from the herd's stores when the view can list
 * them (`HerdView.allRecords`, read in slices between macrotasks, so a dashboard started beside a
 * herd of a million clients never stalls it; the total is exact once `seeded`). Records are the
 * herd's own objects (shared, not copied); per
 * client the index adds a map entry, a slot in three arrays and a place in the sorted list
 * (about 80 bytes).
 *
 * @module
 */

import type { EventBus } from "../servers/events.ts";
import { displayClip, displayText } from "../servers/events.ts";
import { bytesToBinary } from "../servers/lines.ts";
import { type AtFields, compareRecords, parseLocation } from "../servers/record.ts";
import { recordFields } from "../servers/store.ts";
import { CELL, MAP_H, MAP_W, MAX_ZOOM, projectExact, SPLIT } from "./islands/_geo.ts";
import type { ClientRow, Cluster, ClusterResult, HerdView } from "./types.ts";

const utf8 = new TextEncoder();

export { CELL, MAX_ZOOM };
/** Most grid cells one cluster request may cover. */
export const MAX_CELLS = 20_000;
/** Records seeded per macrotask (~10-50 ms of work). */
const SEED_SLICE = 10_000;
/** How long a slow pass's clusters may be reused while clients keep changing. */
const CACHE_MS = 1_000;
/** A pass at least this slow is reused (stale) rather than repeated at once. */
const SLOW_PASS_MS = 20;
/** New IDs gathered before they are sorted into a run (see `#file`). */
const PENDING_MAX = 4_096;
/** Runs of PENDING_MAX IDs sorted into one. */
const RUNS_MERGED = 8;
/** Most results one search returns. */
export const MAX_SEARCH = 100;
/**
 * Share of the (herd's) thread cluster passes may take, over time: a pass is 15-80 ms at a
 * million clients, and one cached view does not stop a visitor asking for a new view box each
 * time (adv15: back to back, passes held the herd's thread all the time). Past it a pass is
 * refused ({@linkcode ClustersBusyError}: the route's 503) until the share is earned back.
 */
export const CLUSTER_SHARE = 0.25;
/** Pass time that may be spent at once before the share applies (ms). */
const CLUSTER_BURST_MS = 250;

/** A cluster pass was refused: passes have taken their share of the thread (see CLUSTER_SHARE). */
export class ClustersBusyError extends Error {}
/**
 * Record bytes (text, plus {@linkcode CLIENT_OVERHEAD} a client) the index of a view that cannot
 * list its records (a remote herd) holds. An in-process herd's records are its own, shared and
 * bounded by its record budget; a remote view's come from the servers' streams, a copy of every
 * server's, and nothing bounded them (adv15: a member's 3,000 location events of 60 KB took
 * +184 MB of the dashboard's heap, and any number more). Past it a new client is not indexed
 * (the total is a lower bound there anyway); a known client's record still changes within it.
 */
export const REMOTE_INDEX_BYTES = 256 * 1024 * 1024;
/** Bytes counted per client besides its text: the map entry, the slots, the sorted list. */
const CLIENT_OVERHEAD = 128;

/** A record's size as the index counts it. */
function recordBytes(r: AtFields): number {
  return r.client.length + r.origin.length + r.diff.length + r.location.length + r.time.length +
    CLIENT_OVERHEAD;
}

/** The whole map, in map units. */
export const WORLD_BOX: readonly [number, number, number, number] = [0, 0, MAP_W, MAP_H];

/** A view box `[x0, y0, x1, y1]` in map units. */
export type Box = readonly [number, number, number, number];

/** The display form of a record. */
export function clientRow(r: AtFields): ClientRow & { diff: string } {
  const p = parseLocation(r.location);
  return {
    client: displayClip(r.client),
    origin: displayClip(r.origin),
    diff: displayClip(r.diff),
    time: displayClip(r.time),
    location: displayClip(r.location),
    lat: p?.lat ?? NaN,
    lng: p?.lng ?? NaN,
  };
}

/** The first index in sorted `a` whose value is not below `key`. */
function lowerBound(a: readonly string[], key: string): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Sorted `a` and `b` merged into a new sorted array. */
function mergeSorted(a: readonly string[], b: readonly string[]): string[] {
  if (a.length === 0) return b.slice();
  if (b.length === 0) return a.slice();
  const out = new Array<string>(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) out[k++] = a[i] < b[j] ? a[i++] : b[j++];
  while (i < a.length) out[k++] = a[i++];
  while (j < b.length) out[k++] = b[j++];
  return out;
}

/** Every client's newest record, its map position, and the IDs sorted. See the module doc. */
export class ClientIndex {
  readonly #slots = new Map<string, number>();
  #recs: AtFields[] = [];
  #x = new Float32Array(1024);
  #y = new Float32Array(1024);
  /** IDs in code-unit order, as sorted runs (largest first), and the newest IDs unsorted. */
  #runs: string[][] = [];
  #pending: string[] = [];
  /** True when the view lists its records (an in-process herd); false for a remote one. */
  readonly #listable: boolean;
  /** True while the records the view held at the start are still being read in. */
  #seeding = false;
  readonly #herd: HerdView;
  readonly #off: () => void;
  /** Bumped on every change (cluster results are cached per version). */
  #version = 0;
  #closed = false;
  /** Display form -> ID, for the IDs whose display form is not their UTF-8 (see `find`). */
  readonly #lossy = new Map<string, string>();
  #cache:
    | { key: string; version: number; at: number; ms: number; result: ClusterResult }
    | undefined;
  /** Pass time that may be spent now (ms; a token bucket filled at CLUSTER_SHARE). */
  #passBudget = CLUSTER_BURST_MS;
  #passBudgetAt = performance.now();

  /** Bytes of records held (views that cannot list theirs only) and the bound on them. */
  #bytes = 0;
  readonly #maxBytes: number;

  constructor(
    herd: HerdView,
    bus: EventBus = herd.bus,
    opts: { maxBytes?: number } = {},
  ) {
    this.#herd = herd;
    this.#maxBytes = typeof herd.allRecords === "function"
      ? Infinity
      : opts.maxBytes ?? REMOTE_INDEX_BYTES;
    this.#off = bus.subscribe((e) => {
      if (e.kind === "location.accepted") this.offer(e.record, e.lat, e.lng);
      else if (e.kind === "location.batch") {
        for (const r of e.records) this.offer(r, r.lat, r.lng);
      }
    });
    if (typeof herd.allRecords === "function") {
      this.#listable = true;
      this.#seeding = true;
      this.seeded = this.#seed(herd.allRecords()).finally(() => this.#seeding = false);
    } else {
      this.#listable = false;
      for (const r of herd.snapshot().records) this.offer(r, r.lat, r.lng);
    }
  }

  /** Resolves when every record the view held at the start is in (at once for a remote view). */
  readonly seeded: Promise<void> = Promise.resolve();

  async #seed(records: Iterator<AtFields>): Promise<void> {
    let done = false;
    while (!done && !this.#closed) {
      for (let i = 0; i < SEED_SLICE; i++) {
        const next = records.next();
        if (next.done) {
          done = true;
          break;
        }
        this.offer(next.value);
      }
      // Let the herd's own work run between slices.
      if (!done) await new Promise((r) => setTimeout(r, 0));
    }
  }

  /** False while the total is a lower bound: a remote herd, or records still being read in. */
  get exact(): boolean {
    return this.#listable && !this.#seeding;
  }

  /** Distinct clients known. */
  get size(): number {
    return this.#slots.size;
  }

  /**
   * The total to show: the index's size, or for a view that cannot list its records, at least
   * the largest server's count (each server's count is exact; the union is at least that).
   */
  total(): number {
    if (this.exact) return this.size;
    let most = this.size;
    for (const s of this.#herd.snapshot(0).servers) most = Math.max(most, s.records);
    return most;
  }

  /** Stores a record when it is the client's newest. Returns true when it changed the index. */
  offer(r: AtFields, lat?: number, lng?: number): boolean {
    let slot = this.#slots.get(r.client);
    if (slot !== undefined && compareRecords(r, this.#recs[slot]) <= 0) return false;
    if (lat === undefined || lng === undefined) {
      const p = parseLocation(r.location);
      lat = p?.lat ?? NaN;
      lng = p?.lng ?? NaN;
    }
    if (this.#maxBytes !== Infinity) {
      const more = recordBytes(r) - (slot === undefined ? 0 : recordBytes(this.#recs[slot]));
      if (this.#bytes + more > this.#maxBytes) return false;
      this.#bytes += more;
    }
    // The shared fields, not a store's view of them (56 B more a client at a million).
    r = recordFields(r);
    if (slot === undefined) {
      slot = this.#recs.length;
      this.#slots.set(r.client, slot);
      this.#recs.push(r);
      this.#file(r.client);
      if (slot >= this.#x.length) this.#grow();
    } else {
      this.#recs[slot] = r;
    }
    const p = projectExact(lng, lat);
    this.#x[slot] = p ? p[0] : NaN;
    this.#y[slot] = p ? p[1] : NaN;
    this.#version++;
    return true;
  }

  #grow(): void {
    const x = new Float32Array(this.#x.length * 2);
    const y = new Float32Array(this.#y.length * 2);
    x.set(this.#x);
    y.set(this.#y);
    this.#x = x;
    this.#y = y;
  }

  /** The newest record of a client (its binary-string ID), if known. */
  get(client: string): AtFields | undefined {
    const slot = this.#slots.get(client);
    return slot === undefined ? undefined : this.#recs[slot];
  }

  /**
   * The newest record of the client a page names by its display form (`text`, as typed: UTF-8
   * of the ID, U+FFFD for bytes that are not UTF-8): the ID whose bytes are `text`'s UTF-8, else
   * the one whose display form it is. Two IDs that differ only in bytes that are not UTF-8 show
   * the same text: the one filed last answers for both (the page cannot tell them apart).
   */
  find(text: string): AtFields | undefined {
    const exact = this.get(bytesToBinary(utf8.encode(text)));
    if (exact !== undefined) return exact;
    const id = this.#lossy.get(text);
    return id === undefined ? undefined : this.get(id);
  }

  /**
   * Files a new ID. Every PENDING_MAX new IDs are sorted into a run of their own, and eight such
   * runs into one (V8's sort merges the sorted runs it finds): each ID is sorted twice, no step
   * takes more than a few tens of milliseconds, a search looks into about 30 runs at a million
   * clients (two binary searches each) and never has more than PENDING_MAX unsorted IDs to scan.
   * (Sorting a million IDs at the first search stalled the herd's thread for seconds; merging
   * runs all the way up would stall it for a quarter second at times.)
   */
  #file(id: string): void {
    // Only IDs whose display form loses bytes (rare: bytes that are not UTF-8) are kept here.
    if (/[^\x00-\x7f]/.test(id)) {
      const shown = displayText(id);
      if (bytesToBinary(utf8.encode(shown)) !== id) this.#lossy.set(shown, id);
    }
    this.#pending.push(id);
    if (this.#pending.length < PENDING_MAX) return;
    const runs = this.#runs;
    runs.push(this.#pending.sort());
    this.#pending = [];
    const n = runs.length;
    if (n >= RUNS_MERGED && runs[n - RUNS_MERGED].length === PENDING_MAX) {
      runs.push(runs.splice(n - RUNS_MERGED).flat().sort());
    }
  }

  /** IDs not yet in a sorted run: what a search scans (at most PENDING_MAX). */
  get unsorted(): number {
    return this.#pending.length;
  }

  /**
   * Clients whose ID starts with `prefix` (a binary string): how many, and the first `limit`
   * in ID order. Two binary searches in each sorted run, plus a
   * scan of the fewer than PENDING_MAX IDs added since the last run was made.
   */
  search(prefix: string, limit: number): { total: number; records: AtFields[] } {
    // Binary strings hold chars up to \xff only, so every ID with the prefix sorts below this.
    const end = prefix + "\u0100";
    let total = 0;
    // The first `limit` matches of each run, then of the pending IDs, merged.
    let best: string[] = [];
    for (const run of this.#runs) {
      const from = lowerBound(run, prefix);
      const to = lowerBound(run, end);
      total += to - from;
      if (to > from) best = mergeSorted(best, run.slice(from, Math.min(to, from + limit)));
      if (best.length > limit) best.length = limit;
    }
    const extra = this.#pending.filter((id) => id.startsWith(prefix));
    total += extra.length;
    best = mergeSorted(best, extra.sort()).slice(0, limit);
    return { total, records: best.map((id) => this.get(id)!) };
  }

  /**
   * The clients inside `box` grouped on a grid of cells `CELL / 2^z` map units wide (aligned to
   * the map's origin, so groups stay put while the view pans). A group of one names its client.
   * Throws a RangeError when the box spans more than `MAX_CELLS` cells.
   */
  clusters(z: number, box: Box = WORLD_BOX): ClusterResult {
    const cell = CELL / 2 ** z;
    const [x0, y0, x1, y1] = box;
    const gx0 = Math.floor(x0 / cell);
    const gy0 = Math.floor(y0 / cell);
    const cols = Math.floor(x1 / cell) - gx0 + 1;
    const rows = Math.floor(y1 / cell) - gy0 + 1;
    if (cols * rows > MAX_CELLS) {
      throw new RangeError(
        `the view spans ${cols * rows} cells at zoom ${z} (at most ${MAX_CELLS})`,
      );
    }
    // One pass over every client takes 15-80 ms at a million: the same view is answered from
    // the last pass while nothing changed, or, when that pass was slow, for a second while
    // clients keep changing (marked stale, so the page asks again).
    const key = `${z}:${x0}:${y0}:${x1}:${y1}`;
    const now = performance.now();
    const hit = this.#cache;
    if (hit?.key === key) {
      if (hit.version === this.#version) return hit.result;
      if (hit.ms >= SLOW_PASS_MS && now - hit.at < CACHE_MS) return { ...hit.result, stale: true };
    }
    this.#passBudget = Math.min(
      CLUSTER_BURST_MS,
      this.#passBudget + (now - this.#passBudgetAt) * CLUSTER_SHARE,
    );
    this.#passBudgetAt = now;
    if (this.#passBudget <= 0) {
      throw new ClustersBusyError(
        `map clusters are busy (passes over ${this.#recs.length} clients take their share of ` +
          "the herd's time); try again in a second",
      );
    }
    const cells = cols * rows;
    const n = new Uint32Array(cells);
    const sx = new Float64Array(cells);
    const sy = new Float64Array(cells);
    // The first SPLIT clients of each cell: a cell with no more is sent as those clients.
    const members = new Int32Array(cells * SPLIT);
    // Each group's extent, so a click can zoom to fit it.
    const lo = new Float32Array(cells * 2).fill(Infinity);
    const hi = new Float32Array(cells * 2).fill(-Infinity);
    const X = this.#x;
    const Y = this.#y;
    const count = this.#recs.length;
    const inv = 1 / cell;
    let inView = 0;
    for (let i = 0; i < count; i++) {
      const x = X[i];
      const y = Y[i];
      // NaN (off the map) fails both tests.
      if (!(x >= x0 && x <= x1 && y >= y0 && y <= y1)) continue;
      const c = (Math.floor(x * inv) - gx0) + (Math.floor(y * inv) - gy0) * cols;
      const k = n[c]++;
      if (k < SPLIT) members[c * SPLIT + k] = i;
      sx[c] += x;
      sy[c] += y;
      if (x < lo[2 * c]) lo[2 * c] = x;
      if (y < lo[2 * c + 1]) lo[2 * c + 1] = y;
      if (x > hi[2 * c]) hi[2 * c] = x;
      if (y > hi[2 * c + 1]) hi[2 * c + 1] = y;
      inView++;
    }
    const clusters: Cluster[] = [];
    // 1e-5 map units is ~40 cm: below any zoom level.
    const round = (v: number) => Math.round(v * 1e5) / 1e5;
    for (let c = 0; c < cells; c++) {
      const k = n[c];
      if (k === 0) continue;
      if (k > SPLIT) {
        clusters.push({
          x: round(sx[c] / k),
          y: round(sy[c] / k),
          n: k,
          ext: [round(lo[2 * c]), round(lo[2 * c + 1]), round(hi[2 * c]), round(hi[2 * c + 1])],
        });
        continue;
      }
      for (let m = 0; m < k; m++) {
        const i = members[c * SPLIT + m];
        const r = this.#recs[i];
        clusters.push({
          x: round(X[i]),
          y: round(Y[i]),
          n: 1,
          client: displayClip(r.client),
          rec: {
            origin: displayClip(r.origin),
            diff: displayClip(r.diff),
            location: displayClip(r.location),
            time: displayClip(r.time),
          },
        });
      }
    }
    const result: ClusterResult = {
      total: this.total(),
      exact: this.exact,
      inView,
      z,
      cell,
      clusters,
    };
    const ms = performance.now() - now;
    this.#passBudget -= ms;
    this.#cache = { key, version: this.#version, at: now, ms, result };
    return result;
  }

  /** Leaves the bus (and stops seeding). */
  close(): void {
    this.#closed = true;
    this.#off();
  }
}
