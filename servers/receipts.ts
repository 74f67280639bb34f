/**
 * Receipts on a link's record stream: the bookkeeping behind read-your-writes across the herd.
 *
 * A server that stores a new record (from a client, or fresh from a peer) can wait, bounded, for
 * its neighbours' receipt of it. A neighbour receipts a record once it has stored it (or found it
 * a duplicate or stale) and, when the record was new to it, once its own onward links have
 * receipted it too or timed out: so a receipt covers every server the record reached, at any
 * number of hops. Receipts are per record, not cumulative, so one record waiting on a slow hop
 * never holds up the receipts of others (cumulative receipts deadlock around a cycle of links
 * carrying records from several origins at once, until the timeouts break it).
 *
 * On the wire a receipt is `A <from> <to>`: every record of the sender's with a sequence number
 * in that range that reached us is receipted (numbers in the range that were never sent, because
 * they were skipped, are covered too). See docs/protocol.md.
 *
 * @module
 */

import { formatReceipt } from "./wire.ts";

/** A record waiting for one link's receipt: told true when receipted, false when not. */
interface Waiter {
  seq: number;
  deadline: number;
  done: (receipted: boolean) => void;
}

/**
 * The sending side of one link: records waiting for the peer's receipt, in sequence order,
 * with one timer for them all.
 *
 * @example
 * ```ts
 * const w = new ReceiptWaiters();
 * const p = w.wait(7, 5); // true once `A 5 9` arrives, false after 5 ms
 * w.receipted(5, 9);
 * ```
 */
export class ReceiptWaiters {
  #waiters: Waiter[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the timer fires. */
  #next = Infinity;
  /** A receipt timed out: the peer is not waited for until it receipts again (see #expire). */
  #late = false;

  /** Records waiting now. */
  get size(): number {
    return this.#waiters.length;
  }

  /**
   * True from a receipt that did not come in time until the peer's next receipt (`resume`) or
   * the link's end (`clear`): nobody should wait for this peer meanwhile (`onReceipt` answers at
   * once), so one frozen or broken neighbour costs one bounded wait, not one per record.
   */
  get late(): boolean {
    return this.#late;
  }

  /** The peer sent a receipt: it answers again, so its receipts are waited for again. */
  resume(): void {
    this.#late = false;
  }

  /** Waits up to `ms` for the receipt of our record `seq`. */
  wait(seq: number, ms: number): Promise<boolean> {
    return new Promise((resolve) => this.onReceipt(seq, performance.now() + ms, resolve));
  }

  /**
   * Calls `done` once with whether our record `seq` was receipted by `deadline` (a
   * `performance.now()` time). A callback, not a promise: a record waits on every up link, and
   * a promise per link plus their `Promise.all` were ~20 promise reactions per IAMAT across the
   * herd.
   */
  onReceipt(seq: number, deadline: number, done: (receipted: boolean) => void): void {
    if (this.#late) return done(true);
    this.#waiters.push({ seq, deadline, done });
    if (this.#timer === undefined) this.#arm();
    else if (deadline < this.#next) {
      clearTimeout(this.#timer);
      this.#arm();
    }
  }

  /** The peer receipted our records `from`..`to`. */
  receipted(from: number, to: number): void {
    const ws = this.#waiters;
    // Binary search for the first waiter at or after `from`; receipts mostly hit the head.
    let lo = 0;
    let hi = ws.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ws[mid].seq < from) lo = mid + 1;
      else hi = mid;
    }
    let end = lo;
    while (end < ws.length && ws[end].seq <= to) end++;
    if (end === lo) return;
    for (const w of ws.splice(lo, end - lo)) w.done(true);
  }

  /** The link went down: nobody is waiting for it any more (a down link is not waited for). */
  clear(): void {
    this.#late = false;
    const ws = this.#waiters;
    this.#waiters = [];
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of ws) w.done(true);
  }

  /** One timer, for the earliest deadline (with one wait length, the head's). */
  #arm(): void {
    let first = Infinity;
    for (const w of this.#waiters) if (w.deadline < first) first = w.deadline;
    this.#next = first;
    if (first === Infinity) {
      this.#timer = undefined;
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const now = performance.now();
      const expired = this.#waiters.find((w) => w.deadline <= now);
      if (expired === undefined) this.#arm();
      else this.#expire(expired);
    }, Math.max(0, first - performance.now()));
  }

  /**
   * `expired` waited out its deadline: the peer is late. Only that record reports it (one
   * `receipt.late` per peer and episode, not one per record); every other waiter goes on at once,
   * as for a down link, and later ones do not wait until the peer's next receipt.
   */
  #expire(expired: Waiter): void {
    this.#late = true;
    const ws = this.#waiters;
    this.#waiters = [];
    this.#next = Infinity;
    for (const w of ws) w.done(w !== expired);
  }
}

/**
 * A record's wait for the receipts of the links it went on to (one count per link), settled once
 * every one answered or gave up: a callback, not a promise. Every record new to a server waits so
 * (4 relayed per IAMAT in the seed herd), and a promise for each, with the `then` of its receipt
 * queue entry, was a promise, two reactions and a microtask per record per hop.
 *
 * @example
 * ```ts
 * const c = new ReceiptCountdown(2);
 * c.onSettled(() => console.log("both links receipted"));
 * c.tick();
 * c.tick(); // logs
 * ```
 */
export class ReceiptCountdown {
  #left: number;
  #then: (() => void) | undefined;

  /** Waits for `links` answers (0: settled at once). */
  constructor(links: number) {
    this.#left = links;
  }

  /** True once every link answered. */
  get settled(): boolean {
    return this.#left <= 0;
  }

  /** One link answered (receipted, or not waited for any more). */
  tick(): void {
    if (--this.#left !== 0) return;
    const then = this.#then;
    this.#then = undefined;
    then?.();
  }

  /** Calls `fn` once settled: at once when it is already (one listener: the last one given). */
  onSettled(fn: () => void): void {
    if (this.#left <= 0) fn();
    else this.#then = fn;
  }
}

/** One record (or skip marker) read from the peer, until its receipt is sent. */
interface Received {
  seq: number;
  ready: boolean;
  sent: boolean;
}

/**
 * The receiving side of one link: what we read from the peer, in order, and which of it can be
 * receipted. Yields `A <from> <to>` lines for runs of ready entries.
 *
 * @example
 * ```ts
 * const onward = new ReceiptCountdown(1); // our own neighbour's receipt of record 5
 *
 * const q = new ReceiptQueue();
 * q.add(3);
 * q.add(5, onward); // ready when onward settles
 * q.take(); // "A 1 3\n" (then "A 4 5\n" once ready)
 * ```
 */
export class ReceiptQueue {
  #entries: Received[] = [];
  /** Every sequence number up to this is receipted (or was never sent to us). */
  #base = 0;
  /** Bumped by reset(): entries of an older connection must not trigger sends on a new one. */
  #generation = 0;
  /** Ready entries not yet receipted that the peer may be waiting for (not `lazy` ones). */
  #urgent = 0;
  #onReady: () => void;

  /** `onReady` is called when a waiting entry becomes ready (send the receipts). */
  constructor(onReady: () => void = () => {}) {
    this.#onReady = onReady;
  }

  /** Starts again for a new connection: its sequence numbers begin after `base`. */
  reset(base: number): void {
    this.#entries = [];
    this.#base = base;
    this.#generation++;
    this.#urgent = 0;
  }

  /**
   * True when a receipt the peer may be waiting for is ready and not yet taken: worth a write of
   * its own. Receipts of `lazy` entries alone are not (they ride in the next write).
   */
  get urgent(): boolean {
    return this.#urgent > 0;
  }

  /**
   * A line with sequence number `seq` was read; ready at once, or when `pending` settles.
   * `lazy`: nobody waits for its receipt (an `S` line: the peer receipted what it skipped itself
   * when it skipped it), so it makes no write of its own (see `urgent`).
   */
  add(seq: number, pending?: ReceiptCountdown, lazy = false): void {
    const e: Received = { seq, ready: pending === undefined || pending.settled, sent: false };
    this.#entries.push(e);
    if (e.ready) {
      if (!lazy) this.#urgent++;
      return;
    }
    const generation = this.#generation;
    pending!.onSettled(() => {
      e.ready = true;
      // After a reset (new connection) this entry is gone: its receipt goes nowhere.
      if (generation !== this.#generation) return;
      if (!lazy) this.#urgent++;
      this.#onReady();
    });
  }

  /** The receipt lines for everything ready and not yet receipted ("" when none). */
  take(): string {
    this.#urgent = 0;
    const es = this.#entries;
    let out = "";
    let prev = this.#base;
    let runFrom = -1;
    let prefix = 0;
    let inPrefix = true;
    for (let i = 0; i < es.length; i++) {
      const e = es[i];
      if (e.ready && !e.sent) {
        if (runFrom < 0) runFrom = prev + 1;
        e.sent = true;
      } else if (runFrom >= 0) {
        out += formatReceipt(runFrom, prev);
        runFrom = -1;
      }
      if (!e.ready) inPrefix = false;
      else if (inPrefix) prefix = i + 1;
      prev = e.seq;
    }
    if (runFrom >= 0) out += formatReceipt(runFrom, prev);
    if (prefix > 0) {
      this.#base = es[prefix - 1].seq;
      this.#entries = prefix === es.length ? [] : es.slice(prefix);
    }
    return out;
  }
}
