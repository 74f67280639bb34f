/**
 * A small HDR-like latency histogram: logarithmic buckets (64 per power of two, so any reported
 * percentile is within ~1.1% of the true value), sparse, serializable to JSON and mergeable.
 * Mergeable is the point: several load-generator processes each record their own histogram and
 * the orchestrator adds them up, which averaging per-process percentiles could not do.
 *
 * @module
 */

/** Buckets per power of two. 64 keeps the relative error near 1.1%. */
const SUB = 64;
/** Values are recorded in microseconds; anything below 1 µs lands in bucket 0. */
const UNIT_PER_MS = 1000;

/** The JSON form of a {@linkcode Histogram}: what a load process prints and the parent merges. */
export interface HistogramJSON {
  sub: number;
  /** Sparse `[bucketIndex, count]` pairs. */
  counts: [number, number][];
  total: number;
  /** Sum of recorded values in ms, for the mean. */
  sumMs: number;
  minMs: number;
  maxMs: number;
}

/** A mergeable log-bucket histogram of latencies in milliseconds. */
export class Histogram {
  #counts = new Map<number, number>();
  total = 0;
  sumMs = 0;
  minMs = Infinity;
  maxMs = 0;

  /** Records one latency, in milliseconds. */
  record(ms: number): void {
    const us = ms * UNIT_PER_MS;
    const i = us < 1 ? 0 : Math.floor(Math.log2(us) * SUB) + 1;
    this.#counts.set(i, (this.#counts.get(i) ?? 0) + 1);
    this.total++;
    this.sumMs += ms;
    if (ms < this.minMs) this.minMs = ms;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  /** Adds another histogram's counts into this one. */
  merge(other: Histogram | HistogramJSON): this {
    const o = other instanceof Histogram ? other.toJSON() : other;
    if (o.sub !== SUB) throw new Error(`histogram resolution mismatch: ${o.sub} vs ${SUB}`);
    for (const [i, c] of o.counts) this.#counts.set(i, (this.#counts.get(i) ?? 0) + c);
    this.total += o.total;
    this.sumMs += o.sumMs;
    if (o.total > 0) {
      this.minMs = Math.min(this.minMs, o.minMs);
      this.maxMs = Math.max(this.maxMs, o.maxMs);
    }
    return this;
  }

  /**
   * The value at quantile `q` (0..1) in ms: the upper edge of the bucket holding it, clamped to
   * the exact max, so a percentile is never under-reported. NaN when empty.
   */
  quantile(q: number): number {
    if (this.total === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (const i of [...this.#counts.keys()].sort((a, b) => a - b)) {
      seen += this.#counts.get(i)!;
      if (seen >= rank) {
        const upperUs = i === 0 ? 1 : 2 ** (i / SUB);
        return Math.min(upperUs / UNIT_PER_MS, this.maxMs);
      }
    }
    return this.maxMs;
  }

  /** Mean latency in ms (exact, from the running sum). */
  mean(): number {
    return this.total === 0 ? NaN : this.sumMs / this.total;
  }

  /** Serializable form; `Histogram.fromJSON(h.toJSON())` round-trips. */
  toJSON(): HistogramJSON {
    return {
      sub: SUB,
      counts: [...this.#counts.entries()].sort((a, b) => a[0] - b[0]),
      total: this.total,
      sumMs: this.sumMs,
      minMs: this.total === 0 ? 0 : this.minMs,
      maxMs: this.maxMs,
    };
  }

  /** Rebuilds a histogram from {@linkcode Histogram.toJSON} output. */
  static fromJSON(json: HistogramJSON): Histogram {
    return new Histogram().merge(json);
  }
}
