/**
 * Retry delays: capped exponential backoff, and jitter, for the retry loops of the herd (link
 * redials, observer redials, failed disk writes).
 *
 * @module
 */

/**
 * A delay that doubles with every retry, from `minMs` up to `maxMs`, and starts over on
 * success.
 *
 * @example
 * ```ts
 * const b = new Backoff(10, 1000);
 * b.next(); // 10 (the delay to wait now)
 * b.next(); // 20
 * b.current; // 40 (the next one, not taken)
 * b.reset(); // success: 10 again
 * ```
 */
export class Backoff {
  readonly #min: number;
  readonly #max: number;
  #current: number;

  constructor(minMs: number, maxMs: number) {
    this.#min = minMs;
    this.#max = maxMs;
    this.#current = minMs;
  }

  /** The delay the next retry waits. */
  get current(): number {
    return this.#current;
  }

  /** The delay to wait now; the one after is twice as long (up to the cap). */
  next(): number {
    const delay = this.#current;
    this.#current = Math.min(this.#current * 2, this.#max);
    return delay;
  }

  /** Success: the next delay is the shortest again. */
  reset(): void {
    this.#current = this.#min;
  }
}

/**
 * `ms` spread at random by ±`spread` (a fraction): retries of many servers that failed together
 * (a herd restarting, a network coming back) do not come back in lockstep.
 *
 * @example
 * ```ts
 * const d = jittered(100); // between 75 and 125
 * ```
 */
export function jittered(ms: number, spread = 0.25): number {
  return ms * (1 - spread + Math.random() * 2 * spread);
}
