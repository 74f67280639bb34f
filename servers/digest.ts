/**
 * Bucket digests of a store's records, so that a neighbour can skip, in its catch-up stream to a
 * restarted server, the records that server already got from another neighbour (docs/protocol.md,
 * `HOLD` and `DIGEST`). Pure: no I/O, no state beyond the digests themselves.
 *
 * Clients fall into buckets by a hash of their ID; a bucket's digest is the sum (mod 2^32, two
 * independent 32-bit hashes) of its current records' hashes over all their fields, so it depends
 * on which records a store holds and not on the order it got them. Two stores whose digests of a
 * bucket are equal hold the same records in it (unless two 64-bit sums collide: the hashes are
 * seeded with a random salt per exchange, so a client cannot craft records that collide). A
 * record in such a bucket need not be sent; one in any other bucket is.
 *
 * @module
 */

import type { AtFields } from "./record.ts";

/** Fewest buckets in a digest. */
export const MIN_BUCKETS = 64;
/** Most buckets in a digest (512 KiB of sums; 1 MiB of hex on the wire). */
export const MAX_BUCKETS = 65536;
/** Records per bucket a digest aims at: one record that differs costs its bucket's records. */
const RECORDS_PER_BUCKET = 64;
/** Buckets per `DIGEST` line (16 hex digits each: 16 KiB lines). */
export const BUCKETS_PER_LINE = 1024;

/**
 * The bucket count for a store of `records` records: a power of two, ~64 records a bucket.
 *
 * @example
 * ```ts
 * bucketCount(1_000_000); // 16384
 * bucketCount(10); // 64
 * ```
 */
export function bucketCount(records: number): number {
  let n = MIN_BUCKETS;
  while (n < MAX_BUCKETS && n * RECORDS_PER_BUCKET < records) n *= 2;
  return n;
}

/** FNV-1a over a binary string's chars (bytes), from `h`. */
function fnv(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h;
}

/**
 * The record hashes' running state: two unrelated 32-bit hashes of the same chars, FNV-1a and a
 * multiply-rotate, fed in one pass. Module state: `add` is synchronous.
 */
let ha = 0;
let hb = 0;

/** Feeds a binary string's chars to both hashes. */
function feed(s: string): void {
  let a = ha;
  let b = hb;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b + c, 0x5bd1e995);
    b = (b << 13) | (b >>> 19);
  }
  ha = a;
  hb = b;
}

/** Feeds a space, between two fields (no field holds one): "ab c" and "a bc" hash apart. */
function feedSpace(): void {
  ha = Math.imul(ha ^ 0x20, 0x01000193);
  hb = Math.imul(hb + 0x20, 0x5bd1e995);
  hb = (hb << 13) | (hb >>> 19);
}

/** MurmurHash3's finaliser: every input bit reaches every output bit. */
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The bucket of `client` among `buckets` (a power of two) under `salt`. */
export function bucketOf(client: string, buckets: number, salt: number): number {
  return fmix(fnv(salt ^ 0x2545f491, client)) & (buckets - 1);
}

/**
 * One store's bucket digests: `add` every current record, then compare with the peer's.
 *
 * @example
 * ```ts
 * const r = { origin: "Hill", diff: "+0.1", client: "k", location: "+1+2", time: "5" };
 * const a = new BucketDigest(64, 7);
 * const b = new BucketDigest(64, 7);
 * a.add(r);
 * b.add(r);
 * a.matched(b, 9).covers("k"); // true: the same records in k's bucket
 * ```
 */
export class BucketDigest {
  /** Per bucket, two sums: [2b] and [2b + 1]. */
  readonly sums: Uint32Array;
  constructor(readonly buckets: number, readonly salt: number) {
    this.sums = new Uint32Array(2 * buckets);
  }

  /** Adds a record to its bucket's sums. */
  add(r: AtFields): void {
    const salt = this.salt;
    ha = salt;
    hb = ~salt;
    feed(r.origin);
    feedSpace();
    feed(r.diff);
    feedSpace();
    feed(r.client);
    feedSpace();
    feed(r.location);
    feedSpace();
    feed(r.time);
    const i = 2 * bucketOf(r.client, this.buckets, salt);
    this.sums[i] += fmix(ha);
    this.sums[i + 1] += fmix(hb);
  }

  /**
   * The buckets where `peer`'s digest (same count and salt) equals this one: records of ours in
   * them, changed at or before `upTo` (our head when this digest was taken), the peer holds.
   */
  matched(peer: BucketDigest, upTo: number): MatchedBuckets {
    const same = new Uint8Array(this.buckets);
    const a = this.sums;
    const b = peer.sums;
    let count = 0;
    for (let i = 0; i < this.buckets; i++) {
      if (a[2 * i] === b[2 * i] && a[2 * i + 1] === b[2 * i + 1]) {
        same[i] = 1;
        count++;
      }
    }
    return new MatchedBuckets(same, count, this.salt, upTo);
  }
}

/**
 * The buckets a peer holds exactly as we do ({@linkcode BucketDigest.matched}): a stream to it
 * skips our records in them that changed at or before `upTo`.
 */
export class MatchedBuckets {
  constructor(
    readonly same: Uint8Array,
    /** How many buckets matched. */
    readonly count: number,
    readonly salt: number,
    /** Our head when our digest was taken: later changes were not in it. */
    readonly upTo: number,
  ) {}

  /** Whether the peer holds what we hold of `client` (as of `upTo`). */
  covers(client: string): boolean {
    return this.same[bucketOf(client, this.same.length, this.salt)] === 1;
  }
}

/** One `DIGEST` line's content (wire.ts parses it). */
export interface DigestPart {
  salt: number;
  buckets: number;
  first: number;
  /** 16 hex digits per bucket from `first`: the two sums, 8 digits each. */
  hex: string;
}

/** The `DIGEST` parts of a digest, {@linkcode BUCKETS_PER_LINE} buckets each. */
export function digestParts(d: BucketDigest): DigestPart[] {
  const parts: DigestPart[] = [];
  for (let first = 0; first < d.buckets; first += BUCKETS_PER_LINE) {
    const end = Math.min(d.buckets, first + BUCKETS_PER_LINE);
    let hex = "";
    for (let i = 2 * first; i < 2 * end; i++) hex += d.sums[i].toString(16).padStart(8, "0");
    parts.push({ salt: d.salt, buckets: d.buckets, first, hex });
  }
  return parts;
}

/**
 * A peer's digest as its `DIGEST` lines come in, in order. `add` is false for a part that does
 * not continue the digest (another count or salt, a gap): the peer misbehaved.
 */
export class DigestReader {
  #digest: BucketDigest | undefined;
  #next = 0;

  add(part: DigestPart): boolean {
    if (part.first === 0 && this.#digest === undefined) {
      this.#digest = new BucketDigest(part.buckets, part.salt);
    }
    const d = this.#digest;
    if (
      d === undefined || d.buckets !== part.buckets || d.salt !== part.salt ||
      part.first !== this.#next || part.first + part.hex.length / 16 > d.buckets
    ) {
      return false;
    }
    const n = part.hex.length / 16;
    for (let i = 0; i < 2 * n; i++) {
      d.sums[2 * part.first + i] = parseInt(part.hex.slice(8 * i, 8 * i + 8), 16);
    }
    this.#next += n;
    return true;
  }

  /** The digest once its last part came (the reader then starts over), else undefined. */
  take(): BucketDigest | undefined {
    const d = this.#digest;
    if (d === undefined || this.#next !== d.buckets) return undefined;
    this.#digest = undefined;
    this.#next = 0;
    return d;
  }
}
