/**
 * A store's change log as two typed columns: per change, the client slot it stored
 * (servers/record_table.ts) and its sequence number, in ascending sequence order. 12 B a
 * change, outside the JS heap, where an array of record objects took 8 B of heap a change and
 * kept every superseded record object alive until the next compaction. The columns grow by
 * chunks (servers/chunked.ts), never by copying.
 *
 * @module
 */

import { ChunkedNumbers } from "./chunked.ts";

/**
 * Changes in sequence order; an entry is current while its slot still holds that sequence
 * number (the store decides: see {@linkcode ChangeLog.retain}).
 *
 * @example
 * ```ts
 * const log = new ChangeLog();
 * log.append(7, 1);
 * log.append(3, 2);
 * log.append(7, 3); // slot 7 again: its entry with seq 1 is superseded
 * log.firstAfter(1); // 1: the index of the first entry with seq > 1
 * log.retain((slot, seq) => slot !== 7 || seq === 3);
 * log.length; // 2
 * ```
 */
export class ChangeLog {
  #slots = new ChunkedNumbers(Int32Array);
  #seqs = new ChunkedNumbers(Float64Array);
  #length = 0;

  /** Entries in the log. */
  get length(): number {
    return this.#length;
  }

  /** The client slot of entry `i` (below {@linkcode length}). */
  slot(i: number): number {
    return this.#slots.get(i);
  }

  /** The sequence number of entry `i` (below {@linkcode length}). */
  seq(i: number): number {
    return this.#seqs.get(i);
  }

  /** Appends a change; `seq` must be above every sequence number in the log. */
  append(slot: number, seq: number): void {
    const n = this.#length;
    this.#slots.set(n, slot);
    this.#seqs.set(n, seq);
    this.#length = n + 1;
  }

  /** The index of the first entry with a sequence number above `seq` (length when none). */
  firstAfter(seq: number): number {
    const seqs = this.#seqs;
    let lo = 0;
    let hi = this.#length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (seqs.get(mid) <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Keeps only the entries `current` says are, in order. The chunks past the kept entries are
   * let go, so a log that once held many changes does not keep their room.
   */
  retain(current: (slot: number, seq: number) => boolean): void {
    const slots = this.#slots;
    const seqs = this.#seqs;
    let kept = 0;
    for (let i = 0; i < this.#length; i++) {
      const slot = slots.get(i);
      const seq = seqs.get(i);
      if (!current(slot, seq)) continue;
      slots.set(kept, slot);
      seqs.set(kept, seq);
      kept++;
    }
    this.#length = kept;
    slots.truncate(kept);
    seqs.truncate(kept);
  }

  /** Forgets every entry and the room they took. */
  clear(): void {
    this.#slots = new ChunkedNumbers(Int32Array);
    this.#seqs = new ChunkedNumbers(Float64Array);
    this.#length = 0;
  }
}
