/**
 * Held link writes: one timer for every link of the process whose write waits
 * (`LinkOptions.writeHoldMs`, servers/peers.ts). A timer costs the runtime a wake-up of its own
 * (an eventfd write when it becomes the earliest, another when it fires, and a pass of the event
 * loop): one per link would cost that once per held write, where one shared timer lets the held
 * writes of every link go in one pass.
 *
 * @module
 */

/**
 * Runs held writes when the earliest of them is due; a write held later than that goes with it
 * (early by less than one hold, which only bounds how far apart a busy link's writes are).
 *
 * @example
 * ```ts
 * const holds = new HeldWrites();
 * const link = {};
 * holds.hold(link, performance.now() + 1, () => console.log("write now"));
 * holds.release(link); // the link went down: nothing runs
 * ```
 */
export class HeldWrites {
  #held = new Map<object, () => void>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the timer fires (`performance.now()` time); Infinity without one. */
  #at = Infinity;

  /** Writes held now. */
  get size(): number {
    return this.#held.size;
  }

  /** Holds `owner`'s write until `at` (a `performance.now()` time), or the earliest held one. */
  hold(owner: object, at: number, write: () => void): void {
    this.#held.set(owner, write);
    if (at >= this.#at) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#at = at;
    this.#timer = setTimeout(() => this.#run(), Math.max(0, at - performance.now()));
  }

  /** Drops `owner`'s held write (its connection went away); the timer goes with the last. */
  release(owner: object): void {
    if (!this.#held.delete(owner) || this.#held.size > 0) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#at = Infinity;
  }

  #run(): void {
    const writes = [...this.#held.values()];
    this.#held.clear();
    this.#timer = undefined;
    this.#at = Infinity;
    for (const write of writes) write();
  }
}
