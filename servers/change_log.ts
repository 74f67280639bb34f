/**
 * A store's change log as two typed columns: per change, the client slot it stored
 * (servers/record_table.ts) and its sequence number, in ascending sequence order. 12 B a
 * change, outside the JS heap, where an array of record objects took 8 B of heap a change and
 * kept every superseded record object alive until the next compaction.
 *
 * @module
 */

/** The columns' first size; they double when full. */
const MIN_CAPACITY = 64;

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
  #slots = new Int32Array(MIN_CAPACITY);
  #seqs = new Float64Array(MIN_CAPACITY);
  #length = 0;

  /** Entries in the log. */
  get length(): number {
    return this.#length;
  }

  /** The client slot of entry `i` (below {@linkcode length}). */
  slot(i: number): number {
    return this.#slots[i];
  }

  /** The sequence number of entry `i` (below {@linkcode length}). */
  seq(i: number): number {
    return this.#seqs[i];
  }

  /** Appends a change; `seq` must be above every sequence number in the log. */
  append(slot: number, seq: number): void {
    const n = this.#length;
    if (n === this.#slots.length) this.#resize(n * 2);
    this.#slots[n] = slot;
    this.#seqs[n] = seq;
    this.#length = n + 1;
  }

  /** The index of the first entry with a sequence number above `seq` (length when none). */
  firstAfter(seq: number): number {
    const seqs = this.#seqs;
    let lo = 0;
    let hi = this.#length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (seqs[mid] <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Keeps only the entries `current` says are, in order. The columns shrink when a quarter of
   * them would do, so a log that once held many changes does not keep their room.
   */
  retain(current: (slot: number, seq: number) => boolean): void {
    const slots = this.#slots;
    const seqs = this.#seqs;
    let kept = 0;
    for (let i = 0; i < this.#length; i++) {
      if (!current(slots[i], seqs[i])) continue;
      slots[kept] = slots[i];
      seqs[kept] = seqs[i];
      kept++;
    }
    this.#length = kept;
    if (slots.length > MIN_CAPACITY && kept * 4 < slots.length) {
      this.#resize(Math.max(MIN_CAPACITY, kept * 2));
    }
  }

  /** Forgets every entry and the room they took. */
  clear(): void {
    this.#slots = new Int32Array(MIN_CAPACITY);
    this.#seqs = new Float64Array(MIN_CAPACITY);
    this.#length = 0;
  }

  #resize(capacity: number): void {
    const slots = new Int32Array(capacity);
    const seqs = new Float64Array(capacity);
    slots.set(this.#slots.subarray(0, this.#length));
    seqs.set(this.#seqs.subarray(0, this.#length));
    this.#slots = slots;
    this.#seqs = seqs;
  }
}
