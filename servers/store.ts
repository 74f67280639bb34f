/**
 * One server's location records, and its change log.
 *
 * The newer-wins and tie rule live here, in one place ({@linkcode compareRecords}). Every accepted
 * record gets the next sequence number and is appended to the change log; peer links are cursors
 * into that log (like a replica's offset into Tile38's AOF), so live flooding and catch-up after a
 * partition are the same loop: "send what is after my cursor".
 *
 * @module
 */

import { ChangeLog } from "./change_log.ts";
import { type AtFields, compareRecords, sameRecord } from "./record.ts";
import { HeldRecords, RecordTable, SharedRecord } from "./record_table.ts";
import type { BucketDigest, MatchedBuckets } from "./digest.ts";

/** A stored record: the AT fields plus where it sits in this server's change log. */
export interface StoredRecord extends AtFields {
  /** This server's sequence number for the change that stored it. */
  seq: number;
  /** Index of the peer link it arrived on, or -1 when a client sent it here. */
  via: number;
  /**
   * Links known to hold this record, one bit per link index below 31 (see {@linkcode heldBy}):
   * the one it arrived on, and any that sent it again. Their streams skip it. Absent: none.
   */
  held?: number;
}

/** {@linkcode RecordStore.readAfter}'s `skipVia` that skips no link's records (`via` -1 is a client's). */
export const SKIP_NONE = -2;

/** The bit of link `index` in {@linkcode StoredRecord.held} (0: a link without one). */
function linkBit(index: number): number {
  return index >= 0 && index < 31 ? 1 << index : 0;
}

/**
 * A record as one store holds it, handed out by the store: the record's fields in a body shared
 * with the other stores of this process that hold the same bytes (servers/record_table.ts), and
 * its place in this store's log as it was when handed out. The store keeps these in columns
 * ({@linkcode HeldRecords}), not as objects: this is a short-lived view.
 */
class Held implements StoredRecord {
  constructor(
    readonly body: SharedRecord,
    readonly seq: number,
    readonly via: number,
    /** Links known to hold it ({@linkcode StoredRecord.held}). */
    public held: number,
  ) {}
  get origin(): string {
    return this.body.origin;
  }
  get diff(): string {
    return this.body.diff;
  }
  get client(): string {
    return this.body.client;
  }
  get location(): string {
    return this.body.location;
  }
  get time(): string {
    return this.body.time;
  }
  /** The plain record (events and snapshots serialise it). */
  toJSON(): StoredRecord {
    const { origin, diff, client, location, time } = this.body;
    return { origin, diff, client, location, time, seq: this.seq, via: this.via };
  }
}

/**
 * The AT fields of a record with nothing else: a stored record's shared body (no view kept alive
 * for them), any other record as it is. For holders of many records beyond the store, such as the
 * dashboard's index of every client.
 *
 * @example
 * ```ts
 * const store = new RecordStore();
 * store.offer({ origin: "Hill", diff: "+0.1", client: "k", location: "+1+2", time: "5" }, -1);
 * recordFields(store.get("k")!).location; // "+1+2"
 * ```
 */
export function recordFields(r: AtFields): AtFields {
  return r instanceof Held ? r.body : r;
}

/** A WHATSAT waiting for a client's first record, except records from `ignore`. */
interface Waiter {
  ignore: object | undefined;
  wake: (r: StoredRecord) => void;
  /** Counted under the caps (`#capped`): a wait for an unknown client. */
  capped: boolean;
}

/**
 * What the store decided about an offered record. `full`: newer, but the process's record budget
 * has no room for it (servers/record_table.ts `RecordBudget`).
 */
export type OfferResult = "new" | "stale" | "duplicate" | "full";

/** A slice of the change log, from {@linkcode RecordStore.readAfter}. */
export interface LogSlice {
  records: StoredRecord[];
  /** The sequence number the reader has now seen up to (its next cursor). */
  lastSeq: number;
}

/**
 * Superseded entries the change log may hold beyond twice the live records before it is
 * compacted. Small, so that with a few busy clients a replaced record dies young: a slack of
 * 1,024 kept ~170 ms of records per server alive at 6,000 updates/s, and every young-generation
 * GC copied them (scavenge pauses 5-6 ms at p50 against 2.5 ms with 64). Compaction stays
 * amortised O(1) per change.
 */
const LOG_SLACK = 64;

/** WHATSATs that may wait for one unknown client at a time; more are answered `?` at once. */
export const MAX_WAITERS_PER_CLIENT = 256;

/** WHATSATs that may wait for unknown clients in all, per server. */
export const MAX_WAITERS = 4096;

/**
 * A new store epoch: a fresh store's, or one taken when the store's numbers can no longer be
 * trusted by its neighbours (an unclean stop, a restored data dir: servers/persist.ts, server.ts).
 *
 * @example
 * ```ts
 * freshEpoch().length; // 8
 * ```
 */
export function freshEpoch(): string {
  return crypto.randomUUID().slice(0, 8);
}

/**
 * Records by client ID with a change log.
 *
 * @example
 * ```ts
 * const store = new RecordStore();
 * const rec = { origin: "Hill", diff: "+0.1", client: "k", location: "+1+2", time: "5" };
 * store.offer(rec, -1).result; // "new"
 * store.offer(rec, -1).result; // "duplicate"
 * store.readAfter(0, 10).records.length; // 1
 * ```
 */
export class RecordStore {
  #held: HeldRecords;
  #log = new ChangeLog();
  #seq = 0;
  /** WHATSATs waiting for a client's first record: a Set each, so adding and removing is O(1). */
  #waiters = new Map<string, Set<Waiter>>();
  #waiting = 0;
  /** Of `#waiting`, those under the caps (`whenKnown`'s). */
  #capped = 0;
  /** Identifies this store's sequence space; a fresh store (restart without data) gets a new one. */
  epoch: string = freshEpoch();
  #records: RecordTable;

  /** `records`: where record bodies are shared with other stores (none unless given). */
  constructor(records: RecordTable = new RecordTable()) {
    this.#records = records;
    this.#held = new HeldRecords(records);
  }

  /** The soft record budget of the process, in bytes (`Infinity`: none). */
  get budget(): number {
    return this.#records.budget.soft;
  }

  /** How many clients are known. */
  get size(): number {
    return this.#held.size;
  }

  /** The sequence number of the newest change. */
  get headSeq(): number {
    return this.#seq;
  }

  /** The record for a client, if known. */
  get(client: string): StoredRecord | undefined {
    const slot = this.#held.slotOf(client);
    return slot < 0 ? undefined : this.#view(slot);
  }

  /**
   * The newest record of `client` that any store sharing this store's record table holds (this
   * store's own when the table is its alone), if any. Every record there was validated when it
   * was stored: a link that reads one byte for byte need not validate it again (peers.ts).
   */
  newest(client: string): SharedRecord | undefined {
    return this.#records.listed(client);
  }

  /**
   * This store's record of the client of `newest` (what {@linkcode newest} returned), if any:
   * {@linkcode get} without looking the client up again.
   */
  heldOf(newest: SharedRecord): StoredRecord | undefined {
    return this.#held.body(newest.slot) === undefined ? undefined : this.#view(newest.slot);
  }

  /** All current records (in no particular order). */
  *values(): IterableIterator<StoredRecord> {
    for (const slot of this.#held.slots()) yield this.#view(slot);
  }

  /** The record held at `slot`, as a {@linkcode Held} view. */
  #view(slot: number): Held {
    const held = this.#held;
    return new Held(held.body(slot)!, held.seq(slot), held.via(slot), held.held(slot));
  }

  /**
   * Offers a record: stored when strictly newer by {@linkcode compareRecords}. `via` is the link
   * index it came on (-1 for a client); `source` is the client connection that sent it, if any
   * (waiters from that connection do not see it: see {@linkcode whenKnown}).
   */
  offer(
    fields: AtFields,
    via: number,
    source?: object,
  ): { result: OfferResult; record?: StoredRecord } {
    const held = this.#held;
    // One lookup of the client in the table, for this store's record and the body to keep.
    const listed = this.#records.listed(fields.client);
    const ours = listed === undefined ? undefined : held.body(listed.slot);
    if (ours !== undefined) {
      // The table's newest body of the client is newer than any other body a store holds (a
      // byte-identical one is always that body): a link's copy of it, the common case in
      // `start`, is new here without comparing times.
      const order = ours !== listed && sameRecord(fields, listed!)
        ? 1
        : compareRecords(fields, ours);
      if (order === 0) return { result: "duplicate" };
      if (order < 0) return { result: "stale" };
    }
    if (!this.#records.fits(fields, listed, ours, via === -1)) return { result: "full" };
    const record = new Held(
      this.#records.holdListed(fields, listed),
      ++this.#seq,
      via,
      linkBit(via),
    );
    this.#keep(record);
    if (this.#log.length > 2 * held.size + LOG_SLACK) this.#compact();
    // Most offers find nobody waiting: no lookup then.
    const waiting = this.#waiting === 0 ? undefined : this.#waiters.get(record.client);
    if (waiting !== undefined) {
      // Waiters from the connection that stored this record keep waiting (see whenKnown).
      for (const w of waiting) {
        if (source !== undefined && w.ignore === source) continue;
        waiting.delete(w);
        this.#waiting--;
        if (w.capped) this.#capped--;
        w.wake(record);
      }
      if (waiting.size === 0 && this.#waiters.get(record.client) === waiting) {
        this.#waiters.delete(record.client);
      }
    }
    return { result: "new", record };
  }

  /**
   * Restores a record loaded from disk with its sequence number (records must come in ascending
   * `seq` order). Advances the head past it.
   */
  restore(record: StoredRecord): void {
    const held = new Held(this.#records.hold(record), record.seq, record.via, linkBit(record.via));
    this.#keep(held);
    if (held.seq > this.#seq) this.#seq = held.seq;
  }

  /** Puts `record` (its body held from the table) in the columns and the log. */
  #keep(record: Held): void {
    const old = this.#held.set(record.body, record.seq, record.via, record.held);
    if (old !== undefined) this.#records.release(old);
    this.#log.append(record.body.slot, record.seq);
  }

  /**
   * Lets go of every record (the server is done with this store: it restarts with another), so
   * the shared table does not keep them for it. The store is empty afterwards.
   */
  dispose(): void {
    const held = this.#held;
    for (const slot of held.slots()) this.#records.release(held.body(slot)!);
    held.clear();
    this.#log.clear();
  }

  /**
   * Whether this store holds a newer record of the client than the record of `seq` it handed out,
   * given as its fields ({@linkcode recordFields}: its shared body; no view need be kept). A
   * record from elsewhere never is, nor one the store let go of (a restart disposes of the store
   * before the record log flushes what it owes).
   */
  supersededAt(fields: AtFields, seq: number): boolean {
    return fields instanceof SharedRecord && this.#held.seq(fields.slot) > seq;
  }

  /**
   * Link `via` sent us `record` (one we hold) again: the peer holds it, so its stream need not
   * carry it. During a catch-up from two neighbours, each sends nearly every record, and without
   * this each got the other's stream forwarded back (BENCHMARKS.md, "Catch-up").
   */
  heldBy(record: StoredRecord, via: number): void {
    const bit = linkBit(via);
    record.held = (record.held ?? 0) | bit;
    // A view this store handed out names its slot: no lookup of the client (the pump marks each
    // record the in-process neighbour holds, peers.ts `#withoutHeld`).
    const slot = record instanceof Held && this.#held.body(record.body.slot) === record.body
      ? record.body.slot
      : this.#held.slotOf(record.client);
    // Only while it is still this store's record of the client.
    if (slot >= 0 && this.#held.seq(slot) === record.seq) this.#held.addHeld(slot, bit);
  }

  /**
   * Whether this store holds `record` (one that `other`, a store of this process sharing our
   * record table, handed out) or a newer record of its client: what our receipt of it would
   * vouch for, known without it. False for stores with tables of their own (their slots differ).
   * A neighbour in this process reads it to skip sending what we already hold (peers.ts).
   */
  holdsAtLeast(record: StoredRecord, other: RecordStore): boolean {
    if (!(record instanceof Held) || other.#records !== this.#records) return false;
    const ours = this.#held.body(record.body.slot);
    return ours !== undefined && (ours === record.body || compareRecords(record.body, ours) <= 0);
  }

  /**
   * Adds every current record to `digest` (digest.ts); returns the head it was taken at: changes
   * after it are not in it.
   */
  digest(digest: BucketDigest): number {
    const held = this.#held;
    for (const slot of held.slots()) digest.add(held.body(slot)!);
    return this.#seq;
  }

  /**
   * Up to `max` current records changed after `afterSeq`, in sequence order, skipping those that
   * link `skipVia` is known to hold (they arrived over it, or it sent them again: {@linkcode heldBy}),
   * and those changed at or before `matched.upTo` in a bucket the peer holds as we do (digest.ts).
   */
  readAfter(
    afterSeq: number,
    max: number,
    skipVia = SKIP_NONE,
    matched?: MatchedBuckets,
  ): LogSlice {
    const log = this.#log;
    const held = this.#held;
    const records: StoredRecord[] = [];
    const bit = linkBit(skipVia);
    let lastSeq = afterSeq;
    for (let i = log.firstAfter(afterSeq); i < log.length && records.length < max; i++) {
      const slot = log.slot(i);
      lastSeq = log.seq(i);
      // Superseded: the slot holds a later change.
      if (held.seq(slot) !== lastSeq) continue;
      if (held.via(slot) === skipVia || (held.held(slot) & bit) !== 0) continue;
      if (
        matched !== undefined && lastSeq <= matched.upTo && matched.covers(held.body(slot)!.client)
      ) {
        continue;
      }
      records.push(this.#view(slot));
    }
    return { records, lastSeq };
  }

  /**
   * Numbers again every current record changed after `afterSeq` (in order, each its next
   * sequence number, its `via` and held bits kept), so that every link's stream carries it again
   * to the neighbours not known to hold it; `each` sees each one (the record log writes it).
   * Returns how many. The flood's trees use it when the herd turns degraded (server.ts).
   */
  restamp(afterSeq: number, each?: (record: StoredRecord) => void): number {
    const log = this.#log;
    const held = this.#held;
    const end = log.length;
    let n = 0;
    for (let i = log.firstAfter(afterSeq); i < end; i++) {
      const slot = log.slot(i);
      if (held.seq(slot) !== log.seq(i)) continue;
      const seq = ++this.#seq;
      // The same body: nothing to hold or release in the table.
      held.set(held.body(slot)!, seq, held.via(slot), held.held(slot));
      log.append(slot, seq);
      n++;
      each?.(this.#view(slot));
    }
    if (log.length > 2 * held.size + LOG_SLACK) this.#compact();
    return n;
  }

  /** Up to `limit` current records, most recently changed first. */
  recent(limit: number): StoredRecord[] {
    const out: StoredRecord[] = [];
    const log = this.#log;
    for (let i = log.length - 1; i >= 0 && out.length < limit; i--) {
      const slot = log.slot(i);
      if (this.#held.seq(slot) === log.seq(i)) out.push(this.#view(slot));
    }
    return out;
  }

  /**
   * Resolves with the client's record as soon as one is stored, or undefined after `ms`.
   * Lets a WHATSAT that races the flood of a just-accepted IAMAT wait for it briefly. Waiters
   * are bounded (`MAX_WAITERS_PER_CLIENT`, `MAX_WAITERS`): beyond either, it resolves undefined
   * at once, so asking for a ghost client in bulk costs nothing but the answers. Records
   * offered by `ignore` (the WHATSAT's own connection) do not count: anything that connection
   * stores from now on comes from a later command, and a command never sees a later one's effect.
   * `signal` ends the wait early (undefined), as its time running out would.
   */
  whenKnown(
    client: string,
    ms: number,
    ignore?: object,
    signal?: AbortSignal,
  ): Promise<StoredRecord | undefined> {
    const known = this.get(client);
    if (known !== undefined) return Promise.resolve(known);
    return this.#wait(client, ms, ignore, signal, true);
  }

  /**
   * Like {@linkcode whenKnown}, but for a record newer than the one held now: a just restarted
   * server's WHATSAT for a client it knows from disk waits for what its catch-up brings.
   * Resolves undefined when none came in `ms` or by `signal` (the held record stands).
   *
   * Not under the caps: past one, a WHATSAT would be answered at once from a record the herd
   * may have replaced (anyone could fill the caps with unknown clients first). Its memory is
   * bounded all the same: a known client's record, and at most a connection's commands in
   * flight (connection.ts MAX_IN_FLIGHT) times the connection budget, for at most `ms`.
   */
  whenNewer(
    client: string,
    ms: number,
    ignore?: object,
    signal?: AbortSignal,
  ): Promise<StoredRecord | undefined> {
    return this.#wait(client, ms, ignore, signal, false);
  }

  #wait(
    client: string,
    ms: number,
    ignore: object | undefined,
    signal: AbortSignal | undefined,
    capped: boolean,
  ): Promise<StoredRecord | undefined> {
    if (ms <= 0 || signal?.aborted) return Promise.resolve(undefined);
    let set = this.#waiters.get(client);
    if (
      capped && (this.#capped >= MAX_WAITERS || (set?.size ?? 0) >= MAX_WAITERS_PER_CLIENT)
    ) {
      return Promise.resolve(undefined);
    }
    if (set === undefined) this.#waiters.set(client, set = new Set());
    const waiters = set;
    this.#waiting++;
    if (capped) this.#capped++;
    return new Promise((resolve) => {
      const waiter: Waiter = {
        capped,
        ignore,
        wake: (r) => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", giveUp);
          resolve(r);
        },
      };
      const giveUp = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", giveUp);
        if (waiters.delete(waiter)) {
          this.#waiting--;
          if (capped) this.#capped--;
          if (waiters.size === 0 && this.#waiters.get(client) === waiters) {
            this.#waiters.delete(client);
          }
        }
        resolve(undefined);
      };
      const timer = setTimeout(giveUp, ms);
      signal?.addEventListener("abort", giveUp);
      waiters.add(waiter);
    });
  }

  /** Entries in the change log, superseded ones not yet compacted included (for tests). */
  get changes(): number {
    return this.#log.length;
  }

  /**
   * WHATSATs waiting for a record, across all clients (for tests and metrics): for an unknown
   * client, and (during a warm-up) for a newer record of a known one.
   */
  get waiting(): number {
    return this.#waiting;
  }

  /** Drops superseded log entries, keeping sequence order. */
  #compact(): void {
    const held = this.#held;
    this.#log.retain((slot, seq) => held.seq(slot) === seq);
  }
}
