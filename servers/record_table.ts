/**
 * The process's table of shared record bodies: the five servers of `start` each store every
 * record, and without this each holds its own parsed copy of the same bytes (five objects, five
 * sets of strings, each string a slice that pins the whole line it was cut from). A store asks the
 * table for a body when it keeps a record; a record byte for byte the one the table holds for that
 * client gets that very body, so the servers of one process share one copy.
 *
 * Sharing is object identity of byte-identical records only: a store is handed the body of the
 * exact record it was offered, never another one, so every server's view stays its own.
 *
 * Bodies are counted: each store that keeps one holds it once and releases it when it replaces or
 * drops the record. The table lists a client's body only while some store holds it, so replaced
 * and dropped records are not pinned here. A body that is older than the one listed for its
 * client (a server catching up from behind) is handed out unlisted: not shared, never wrong.
 *
 * @module
 */

import { ChunkedArray, ChunkedNumbers } from "./chunked.ts";
import { type AtFields, compareRecords, sameRecord } from "./record.ts";

/** One record's text fields, shared by every store of this process that holds that record. */
export class SharedRecord implements AtFields {
  /**
   * On the body the table lists for its client: how many stores hold a record of that client
   * (this body or an older one). Unused on other bodies.
   */
  refs = 0;
  /** Stores that hold this very body (its text is counted in the budget while any does). */
  holders = 0;
  constructor(
    readonly origin: string,
    readonly diff: string,
    readonly client: string,
    readonly location: string,
    readonly time: string,
    /** The client's index in every store's {@linkcode HeldRecords} while any store holds it. */
    readonly slot: number,
  ) {}
}

/**
 * Distinct origins kept as one string each (server names: a handful in any herd). Bounded, since
 * the names come from peers' bytes.
 */
const MAX_ORIGINS = 64;

/** Below this length V8's substrings are copies already; at or above it, slices of the line. */
const SLICE_MIN = 13;

/**
 * A copy of `s` that does not keep alive the line it was cut from. JSON's round trip makes a new
 * flat string (one byte per char, exactly the same chars).
 */
function own(s: string): string {
  return s.length < SLICE_MIN ? s : JSON.parse(JSON.stringify(s));
}

/**
 * A record's fields as offered to the table; `flat` when its strings are their own already
 * (decoded from bytes, not cut from a longer line: peers.ts `#onRecordBytes`), which spares them
 * the copy.
 */
export interface OfferedFields extends AtFields {
  flat?: boolean;
}

/**
 * What one client costs the process beyond its record's text, as the budget counts it: its body
 * object and strings' headers, its place in the client index, every store's columns and change
 * log entries (measured: 1,000,000 clients in the five stores of `start` take ~0.9 GiB RSS with
 * ~80 chars of text each). An estimate, not a measurement per client.
 */
export const CLIENT_OVERHEAD = 512;

/** The bytes a record's text takes in the budget (the origin is one string per server name). */
function textBytes(r: AtFields): number {
  return r.diff.length + r.client.length + r.location.length + r.time.length;
}

/**
 * The records a process may hold, in bytes as {@linkcode RecordTable.bytes} counts them. Clients
 * send `soft`: past it a new client's IAMAT (or one that grows what the process holds) is refused.
 * Peers send up to `hard`, a margin above: every server refuses clients at about the same point,
 * so records another server accepted just before it filled up still arrive; past `hard` they are
 * dropped too. Records are the part of a server's heap that clients can grow without end; the
 * budget bounds them (the rest, lines and replies in flight, has bounds of its own).
 */
export interface RecordBudget {
  soft: number;
  hard: number;
}

/**
 * The budget for `maxBytes` of records (hard limit a quarter above it).
 *
 * @example
 * ```ts
 * recordBudget(1024 * 1024); // { soft: 1048576, hard: 1310720 }
 * ```
 */
export function recordBudget(maxBytes: number): RecordBudget {
  return { soft: maxBytes, hard: Math.floor(maxBytes * 1.25) };
}

/**
 * Client → the newest body handed out for it while any store holds a record of it, and the
 * client's slot: every store finds its own record of a client at that index of an array
 * ({@linkcode HeldRecords}), so the five stores need no index of their own. The clients are
 * listed in a `ClientIndex` below, not a `Map`.
 *
 * @example
 * ```ts
 * const table = new RecordTable();
 * const r = { origin: "Hill", diff: "+0.1", client: "k", location: "+1+2", time: "5" };
 * const a = table.hold(r);
 * table.hold({ ...r }) === a; // true: byte-identical, shared
 * table.release(a);
 * table.release(a);
 * table.size; // 0: nobody holds it
 * ```
 */
export class RecordTable {
  #byClient = new ClientIndex();
  #origins = new Map<string, string>();
  #freeSlots: number[] = [];
  #slots = 0;
  /** The text of every body a store holds, plus {@linkcode CLIENT_OVERHEAD} per listed client. */
  #bytes = 0;
  /** Where {@linkcode fits} draws the line; unbounded unless given. */
  readonly budget: RecordBudget;

  constructor(budget: RecordBudget = { soft: Infinity, hard: Infinity }) {
    this.budget = budget;
  }

  /** Clients some store holds. */
  get size(): number {
    return this.#byClient.size;
  }

  /**
   * What the records of this process take, as the budget counts it: the text of every body some
   * store holds (an older one that a store behind the others still holds included: a stopped
   * server's, or one across a cut link), plus {@linkcode CLIENT_OVERHEAD} per client.
   */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Whether a store that holds `ours` for the client (undefined: none) may take `fields` instead
   * and keep the table within its budget (`soft` for a client's record, `hard` for a peer's),
   * given what {@linkcode listed} returned for the client. A record that adds no client and no
   * text always fits: a known client keeps updating at the same size or less.
   */
  fits(
    fields: AtFields,
    listed: SharedRecord | undefined,
    ours: SharedRecord | undefined,
    fromClient: boolean,
  ): boolean {
    // A known client's record no longer than its listed one adds nothing once every store has
    // it (the listed body is let go then). In `start` the other stores hold the old body until
    // the flood reaches them, so counting only what this store frees refused a same-size update
    // at the edge (adv10a #3). Only growth beyond the newest body is checked: a client that
    // shrank its record cannot grow it back past what older bodies still held take. Never past
    // the hard limit: with links cut each store may keep its own same-size body (review11 #5).
    const text = textBytes(fields);
    if (
      listed !== undefined && text <= textBytes(listed) && this.#bytes + text <= this.budget.hard
    ) return true;
    const limit = fromClient ? this.budget.soft : this.budget.hard;
    // What this store lets go of is freed if nobody else holds it.
    const frees = ours !== undefined && ours.holders === 1 ? textBytes(ours) : 0;
    const grows = (listed === undefined ? CLIENT_OVERHEAD : 0) + text - frees;
    if (grows <= 0 || this.#bytes + grows <= limit) return true;
    // Only near the limit (holdListed compares again when it shares the body): byte for byte the
    // listed body adds no text, so it always fits.
    return listed !== undefined && sameRecord(listed, fields);
  }

  /** Slots ever handed out (the length stores' arrays grow to); freed ones are reused. */
  get slots(): number {
    return this.#slots;
  }

  /** The listed body of a client, while any store holds a record of it. */
  listed(client: string): SharedRecord | undefined {
    return this.#byClient.get(client);
  }

  /**
   * The body for `fields`, for a store that keeps it (it calls {@linkcode release} when it lets
   * go): the listed one when it is byte for byte this record, else a new one (listed when newer).
   */
  hold(fields: OfferedFields): SharedRecord {
    return this.holdListed(fields, this.#byClient.get(fields.client));
  }

  /**
   * {@linkcode hold}, given what {@linkcode listed} returned for the client just before (a store
   * looks the client up once for its own record and the body).
   */
  holdListed(fields: OfferedFields, listed: SharedRecord | undefined): SharedRecord {
    if (listed === undefined) {
      const slot = this.#freeSlots.pop() ?? this.#slots++;
      const client = fields.flat === true ? fields.client : own(fields.client);
      const body = this.#body(fields, client, slot);
      body.refs = 1;
      this.#byClient.add(body);
      this.#bytes += CLIENT_OVERHEAD;
      return this.#held(body);
    }
    listed.refs++;
    if (sameRecord(listed, fields)) return this.#held(listed);
    const body = this.#body(fields, listed.client, listed.slot);
    if (compareRecords(body, listed) > 0) {
      body.refs = listed.refs;
      listed.refs = 0;
      this.#byClient.replace(body);
    }
    return this.#held(body);
  }

  /** One more store holds `body`: its text counts from the first. */
  #held(body: SharedRecord): SharedRecord {
    if (body.holders++ === 0) this.#bytes += textBytes(body);
    return body;
  }

  /** A store let go of `body`: the client is forgotten (its slot freed) once no store holds it. */
  release(body: SharedRecord): void {
    if (--body.holders === 0) this.#bytes -= textBytes(body);
    const listed = this.#byClient.get(body.client);
    if (listed !== undefined && --listed.refs === 0) {
      this.#byClient.delete(listed);
      this.#freeSlots.push(listed.slot);
      this.#bytes -= CLIENT_OVERHEAD;
    }
  }

  #body(fields: OfferedFields, client: string, slot: number): SharedRecord {
    const flat = fields.flat === true;
    return new SharedRecord(
      this.#origin(fields.origin),
      flat ? fields.diff : own(fields.diff),
      client,
      flat ? fields.location : own(fields.location),
      flat ? fields.time : own(fields.time),
      slot,
    );
  }

  #origin(origin: string): string {
    const known = this.#origins.get(origin);
    if (known !== undefined) return known;
    const copy = own(origin);
    if (this.#origins.size < MAX_ORIGINS) this.#origins.set(copy, copy);
    return copy;
  }
}

/** The client index's first capacity (a power of two); it doubles past half full. */
const MIN_INDEX = 1024;

/**
 * The listed bodies by client: an open-addressing hash table (linear probing, at most half
 * full) of slot numbers in typed arrays, the bodies by slot. A catch-up stream brings a million
 * new clients: with a `Map` each of them cost a miss lookup and an insert walking V8's hash
 * chains (a cache miss per entry and per key string) and the rehash of every key at each
 * doubling, ~1.3 µs a client at 1,000,000 entries; here a miss is one probe of an `Int32Array`
 * (each position keeps its key's hash, so a mismatch never loads the string), and growing
 * rehashes from the kept hashes (BENCHMARKS.md, "Catch-up of 2026-11-27 (sixth pass)"). The
 * hash starts from a random seed per table (as V8 seeds its own), so IDs that collide cannot be
 * computed ahead of time and sent to pile up in one probe run; every char counts (V8 hashes
 * only the length of a string over 16,383 chars).
 */
class ClientIndex {
  /** Per position: the slot plus one (0: empty). */
  #pos = new Int32Array(MIN_INDEX);
  /** Per position: the hash of the client there. */
  #hash = new Int32Array(MIN_INDEX);
  #mask = MIN_INDEX - 1;
  /** The listed body of each slot. */
  #bySlot = new ChunkedArray<SharedRecord>();
  /** Each listed slot's hash (growing rehashes from these, not from the strings). */
  #slotHash = new ChunkedNumbers(Int32Array);
  #size = 0;
  #seed = crypto.getRandomValues(new Int32Array(1))[0];

  get size(): number {
    return this.#size;
  }

  /** FNV-1a over the chars from the table's seed, then murmur3's finaliser. */
  #hashOf(s: string): number {
    let h = this.#seed ^ 0x811c9dc5;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    return h ^ (h >>> 16);
  }

  get(client: string): SharedRecord | undefined {
    const h = this.#hashOf(client);
    const pos = this.#pos;
    const hashes = this.#hash;
    const mask = this.#mask;
    for (let i = h & mask;; i = (i + 1) & mask) {
      const p = pos[i];
      if (p === 0) return undefined;
      if (hashes[i] === h) {
        const body = this.#bySlot.get(p - 1)!;
        if (body.client === client) return body;
      }
    }
  }

  /** Lists `body`, whose client is not listed. */
  add(body: SharedRecord): void {
    const slot = body.slot;
    this.#bySlot.set(slot, body);
    const h = this.#hashOf(body.client);
    this.#slotHash.set(slot, h);
    this.#put(slot, h);
    if (++this.#size * 2 > this.#pos.length) this.#grow();
  }

  /** Lists `body` in place of the listed body of its client (the same slot). */
  replace(body: SharedRecord): void {
    this.#bySlot.set(body.slot, body);
  }

  /** Unlists `body`, the listed body of its client. */
  delete(body: SharedRecord): void {
    const slot = body.slot;
    const pos = this.#pos;
    const hashes = this.#hash;
    const mask = this.#mask;
    let i = this.#slotHash.get(slot) & mask;
    while (pos[i] !== slot + 1) i = (i + 1) & mask;
    // Backward-shift deletion: entries after the hole that probed past it move into it, so no
    // probe ever stops early at it.
    for (let j = (i + 1) & mask; pos[j] !== 0; j = (j + 1) & mask) {
      const home = hashes[j] & mask;
      const between = i <= j ? home > i && home <= j : home > i || home <= j;
      if (between) continue;
      pos[i] = pos[j];
      hashes[i] = hashes[j];
      i = j;
    }
    pos[i] = 0;
    this.#bySlot.set(slot, undefined);
    this.#size--;
  }

  #put(slot: number, h: number): void {
    const pos = this.#pos;
    const mask = this.#mask;
    let i = h & mask;
    while (pos[i] !== 0) i = (i + 1) & mask;
    pos[i] = slot + 1;
    this.#hash[i] = h;
  }

  #grow(): void {
    const size = this.#pos.length * 2;
    this.#pos = new Int32Array(size);
    this.#hash = new Int32Array(size);
    this.#mask = size - 1;
    const bySlot = this.#bySlot;
    for (let slot = 0; slot < bySlot.capacity; slot++) {
      if (bySlot.get(slot) !== undefined) this.#put(slot, this.#slotHash.get(slot));
    }
  }
}

/**
 * One store's records by client, in columns indexed by the table's client slots (read through
 * the table's one client index for all stores): per slot the body this store holds (an older one
 * than the table lists while the store is behind), its sequence number, the link it came on and the
 * links known to hold it. A `Held` object per record and a slot pointing at it took 64 B of
 * heap a record (Deno's V8 has no pointer compression); these columns take 24 B, 16 of them in
 * typed arrays, and grow by chunks (servers/chunked.ts).
 */
export class HeldRecords {
  #table: RecordTable;
  #bodies = new ChunkedArray<SharedRecord>();
  /** 0 where this store holds nothing (sequence numbers start at 1). */
  #seqs = new ChunkedNumbers(Float64Array);
  #vias = new ChunkedNumbers(Int32Array);
  #held = new ChunkedNumbers(Int32Array);
  #size = 0;

  constructor(table: RecordTable) {
    this.#table = table;
  }

  get size(): number {
    return this.#size;
  }

  /** The slot of this store's record of `client`, or -1 when it holds none. */
  slotOf(client: string): number {
    const listed = this.#table.listed(client);
    return listed === undefined || this.#bodies.get(listed.slot) === undefined ? -1 : listed.slot;
  }

  /** The body held at `slot` (undefined where this store holds nothing). */
  body(slot: number): SharedRecord | undefined {
    return this.#bodies.get(slot);
  }

  /** The sequence number of the record held at `slot`; 0 where none is. */
  seq(slot: number): number {
    return this.#seqs.get(slot);
  }

  /** The link index the record at `slot` came on (-1: a client). */
  via(slot: number): number {
    return this.#vias.get(slot);
  }

  /** Bits of the links known to hold the record at `slot`. */
  held(slot: number): number {
    return this.#held.get(slot);
  }

  /** Adds link bits to the record at `slot`. */
  addHeld(slot: number, bits: number): void {
    this.#held.or(slot, bits);
  }

  /**
   * Keeps `body` (held from the table already) as this store's record of its client; returns
   * the body it replaces, for the caller to release.
   */
  set(body: SharedRecord, seq: number, via: number, held: number): SharedRecord | undefined {
    const slot = body.slot;
    const old = this.#bodies.get(slot);
    if (old === undefined) this.#size++;
    this.#bodies.set(slot, body);
    this.#seqs.set(slot, seq);
    this.#vias.set(slot, via);
    this.#held.set(slot, held);
    return old;
  }

  /** The slots this store holds a record at. */
  *slots(): IterableIterator<number> {
    const bodies = this.#bodies;
    for (let slot = 0; slot < bodies.capacity; slot++) {
      if (bodies.get(slot) !== undefined) yield slot;
    }
  }

  /** Forgets every record (the caller released them). */
  clear(): void {
    this.#bodies = new ChunkedArray<SharedRecord>();
    this.#seqs = new ChunkedNumbers(Float64Array);
    this.#vias = new ChunkedNumbers(Int32Array);
    this.#held = new ChunkedNumbers(Int32Array);
    this.#size = 0;
  }
}
