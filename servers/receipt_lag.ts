/**
 * How far a link's receipts lag behind the live records it sent: the flood's trees trust a link
 * only while its peer keeps up (servers/peers.ts `Link.treeReady`). Pure: the caller passes the
 * time.
 *
 * Two measures, either one makes the link stalled: no receipt at all for `gapMs` while records
 * wait (a black-holed path, a frozen peer), and the oldest record still unreceipted sent over
 * `lagMs` ago (a path that receipts, but slower than the records come: a gap rule alone let
 * such a path keep records waiting for seconds where the full flood went round it, past the
 * window the turn to the full flood sends again).
 *
 * @example
 * ```ts
 * const lag = new ReceiptLag({ gapMs: 1000, lagMs: 2000 });
 * lag.sent(10, 0);
 * lag.stalled(900); // false
 * lag.receipted(5, 900); // a receipt, but records 6-10 still wait
 * lag.stalled(1500); // false: a receipt came 600 ms ago
 * lag.stalled(2100); // true: record 10 has waited 2.1 s
 * lag.receipted(10, 2100);
 * lag.stalled(5000); // false: nothing waits
 * ```
 *
 * @module
 */

/** The two bounds (ms). */
export interface ReceiptLagBounds {
  /** Longest time without any receipt while records wait. */
  gapMs: number;
  /** Longest time the oldest unreceipted record may wait. */
  lagMs: number;
}

/** Sends this close together share one mark (bounds the marks to one per this many ms). */
const MARK_MS = 100;
/** At most this many marks: past it the newest is moved on (it only makes the lag look older). */
const MAX_MARKS = 256;

/** One link connection's receipt lag (a new connection starts a new one: {@linkcode reset}). */
export class ReceiptLag {
  readonly bounds: ReceiptLagBounds;
  /** Sends not yet receipted, oldest first: the newest seq of each and when it was first sent. */
  #seqs: number[] = [];
  #at: number[] = [];
  #head = 0;
  /** Since when records wait with no receipt read (-1: none wait). */
  #waitingSince = -1;
  #receiptedTo = 0;

  constructor(bounds: ReceiptLagBounds) {
    this.bounds = bounds;
  }

  /** Live records up to `seq` went out at `now`. */
  sent(seq: number, now: number): void {
    if (seq <= this.#receiptedTo) return;
    const n = this.#seqs.length;
    if (n > this.#head && (now - this.#at[n - 1] < MARK_MS || n - this.#head >= MAX_MARKS)) {
      this.#seqs[n - 1] = seq;
    } else {
      this.#seqs.push(seq);
      this.#at.push(now);
    }
    if (this.#waitingSince < 0) this.#waitingSince = now;
  }

  /** The peer receipted records up to `to` at `now`. */
  receipted(to: number, now: number): void {
    if (to > this.#receiptedTo) this.#receiptedTo = to;
    while (this.#head < this.#seqs.length && this.#seqs[this.#head] <= this.#receiptedTo) {
      this.#head++;
    }
    if (this.#head === this.#seqs.length) {
      this.#seqs = [];
      this.#at = [];
      this.#head = 0;
      this.#waitingSince = -1;
    } else {
      this.#waitingSince = now;
      // Marks taken off the front are dropped now and then, not shifted one at a time.
      if (this.#head >= 64) {
        this.#seqs = this.#seqs.slice(this.#head);
        this.#at = this.#at.slice(this.#head);
        this.#head = 0;
      }
    }
  }

  /** True when the peer does not keep up (see the module's doc). */
  stalled(now: number): boolean {
    if (this.#waitingSince < 0) return false;
    return now - this.#waitingSince > this.bounds.gapMs ||
      now - this.#at[this.#head] > this.bounds.lagMs;
  }

  /** A new connection: nothing sent on it yet. */
  reset(): void {
    this.#seqs = [];
    this.#at = [];
    this.#head = 0;
    this.#waitingSince = -1;
    this.#receiptedTo = 0;
  }
}
