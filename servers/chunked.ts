/**
 * Arrays indexed by a growing number (a client slot, a change-log position) kept in fixed chunks
 * of 4,096 entries, so growing never copies. Arrays that doubled, or JavaScript arrays that grew
 * by half, left every outgrown copy to the garbage collector: with a million clients the copies
 * of one store's columns summed to about the columns themselves, and the JavaScript arrays' copies
 * (over 128 KiB each, so allocated straight in old space) were a collection's worth of garbage
 * held until the next major GC, in RSS the whole while (BENCHMARKS.md, "Memory of 2026-11-27
 * (third pass)"). A chunk is 16-32 KiB, an ordinary heap object or a small native allocation,
 * and at most one chunk per array is partly empty.
 *
 * @module
 */

const CHUNK_BITS = 12;
/** Entries in a chunk. */
export const CHUNK = 1 << CHUNK_BITS;
const MASK = CHUNK - 1;

/**
 * Objects by index; `undefined` where none is set.
 *
 * @example
 * ```ts
 * const a = new ChunkedArray<string>();
 * a.set(10_000, "x");
 * a.get(10_000); // "x"
 * a.get(3); // undefined
 * a.capacity; // 12288: three chunks
 * ```
 */
export class ChunkedArray<T> {
  #chunks: (T | undefined)[][] = [];

  /** Indexes below this have room (a multiple of {@linkcode CHUNK}). */
  get capacity(): number {
    return this.#chunks.length << CHUNK_BITS;
  }

  get(i: number): T | undefined {
    const chunk = this.#chunks[i >>> CHUNK_BITS];
    return chunk === undefined ? undefined : chunk[i & MASK];
  }

  set(i: number, value: T | undefined): void {
    const c = i >>> CHUNK_BITS;
    // Filled with `undefined` up front: a packed array of CHUNK entries that never changes size.
    while (this.#chunks.length <= c) this.#chunks.push(new Array(CHUNK).fill(undefined));
    this.#chunks[c][i & MASK] = value;
  }

  /** Lets go of the chunks past the first `n` indexes' (rounded up to a chunk). */
  truncate(n: number): void {
    this.#chunks.length = Math.min(this.#chunks.length, (n + MASK) >>> CHUNK_BITS);
  }
}

/** The typed arrays a {@linkcode ChunkedNumbers} can be made of. */
export type NumberChunk = Float64Array | Int32Array;

/**
 * Numbers by index in typed chunks (outside the JS heap); 0 where none is set.
 *
 * @example
 * ```ts
 * const seqs = new ChunkedNumbers(Float64Array);
 * seqs.set(5_000, 42);
 * seqs.get(5_000); // 42
 * seqs.get(1_000_000); // 0
 * ```
 */
export class ChunkedNumbers {
  #make: new (n: number) => NumberChunk;
  #chunks: NumberChunk[] = [];

  constructor(make: new (n: number) => NumberChunk) {
    this.#make = make;
  }

  /** Indexes below this have room (a multiple of {@linkcode CHUNK}). */
  get capacity(): number {
    return this.#chunks.length << CHUNK_BITS;
  }

  get(i: number): number {
    const chunk = this.#chunks[i >>> CHUNK_BITS];
    return chunk === undefined ? 0 : chunk[i & MASK];
  }

  set(i: number, value: number): void {
    const c = i >>> CHUNK_BITS;
    while (this.#chunks.length <= c) this.#chunks.push(new this.#make(CHUNK));
    this.#chunks[c][i & MASK] = value;
  }

  /** ORs `bits` into the entry at `i`. */
  or(i: number, bits: number): void {
    this.set(i, this.get(i) | bits);
  }

  /** Lets go of the chunks past the first `n` indexes' (rounded up to a chunk). */
  truncate(n: number): void {
    this.#chunks.length = Math.min(this.#chunks.length, (n + MASK) >>> CHUNK_BITS);
  }
}
