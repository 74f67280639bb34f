/**
 * Fair turns for read loops. A socket that always has data (a catch-up stream, a pipelining
 * client) completes every read at once, and a loop that awaits only those reads never gives the
 * event loop back: other sockets' reads and every timer wait until that stream runs dry. Measured
 * here: two neighbours streaming catch-ups to one server, one stream stalled for 13 s and its
 * link was dropped on a heartbeat timeout; in a two-socket probe, a steady 10 ms sender waited up
 * to 70 ms behind a firehose.
 *
 * @module
 */

import { setImmediate } from "node:timers";

/** How long a loop may run on ready reads before it yields a turn (ms). */
export const DEFAULT_SLICE_MS = 10;
/** Longest run of back-to-back turns before the event loop gets to poll sockets (ms). */
const POLL_EVERY_MS = 100;

/**
 * Tracks one loop's share: {@linkcode FairShare.turn} returns undefined while the loop is within
 * its slice, and otherwise a promise that resolves after one macrotask (timers and other
 * sockets' reads run first).
 *
 * @example
 * ```ts
 * declare const conn: Deno.Conn;
 * declare function handle(bytes: Uint8Array): void;
 *
 * const buf = new Uint8Array(64 * 1024);
 * const fair = new FairShare();
 * for (;;) {
 *   const n = await conn.read(buf);
 *   if (n === null) break;
 *   handle(buf.subarray(0, n));
 *   const turn = fair.turn();
 *   if (turn !== undefined) await turn;
 * }
 * ```
 */
export class FairShare {
  #since = performance.now();
  #ticks = ticks;
  readonly #resume = () => {
    this.#since = performance.now();
  };

  constructor(readonly sliceMs: number = DEFAULT_SLICE_MS) {}

  /**
   * Undefined while within the slice, else the turn to await. `now`: the caller's
   * `performance.now()` when it has just taken one (a link's read loop does per read: the clock
   * is an op, ~0.15 µs, and an IAMAT in `start` passes through a dozen link reads).
   */
  turn(now: number = performance.now()): Promise<void> | undefined {
    // A macrotask ran since this loop last asked: the event loop had the thread (the loop's
    // read waited, or it yielded), so its slice starts again. Counting from the last yield
    // instead made a loop whose reads are sparse yield after nearly every read once 10 ms had
    // passed: a timer and a hop of a millisecond or more before each of its next reads.
    if (ticks !== this.#ticks) {
      this.#ticks = ticks;
      this.#since = now;
    }
    if (now - this.#since < this.sliceMs) {
      armTick();
      return undefined;
    }
    return sharedTurn(now).then(this.#resume);
  }
}

/**
 * Macrotasks seen to run, counted by one shared probe that a loop within its slice arms when none
 * is pending (and by the yields' own timers). A loop whose reads are always ready never lets it
 * run; a loop that waits for its reads does. At most one is pending, and none once every loop is
 * idle.
 *
 * The probe is an immediate: it runs once the event loop gets past the I/O it is handling, in
 * the same wake-up, so it costs no wake-up of its own (~1-2 µs). It was a timer due a third of the
 * slice after it was armed (and a 0 ms timer before that: "Wake-ups of 2026-11-27"): under an
 * open loop at half of peak, each `server` process woke for ~1,000 reads a second and the probe
 * fired ~200 times a second, a runtime wake-up (two eventfd writes and an `epoll_wait`) for each
 * one that fell while the process slept (BENCHMARKS.md, "Five processes of 2026-11-28, second
 * pass").
 */
let ticks = 0;
let ticking = false;

function tick(): void {
  ticks++;
  ticking = false;
}

function armTick(): void {
  if (ticking) return;
  ticking = true;
  setImmediate(tick);
}

/**
 * The pending yield that loops past their slices share, and when its timer was started. Every
 * busy loop yields every slice: with a timer each, 32 clients and 12 link ends under load started
 * ~4,400 timers a second, more than one per IAMAT. Loops that yield within a millisecond of each
 * other (their slices start together when they resume together) wait for one timer instead.
 */
let shared: { turn: Promise<void>; at: number } | undefined;

/**
 * Resolves after one macrotask. Joins the yield started less than 1 ms ago (a 0 ms timer is due
 * after 1 ms), so every timer that was already due when the loop asked still runs first.
 */
function sharedTurn(now: number): Promise<void> {
  if (shared !== undefined && now - shared.at < 1) return shared.turn;
  const turn = new Promise<void>((resolve) =>
    setTimeout(() => {
      if (shared?.turn === turn) shared = undefined;
      ticks++;
      resolve();
    }, 0)
  );
  shared = { turn, at: now };
  return turn;
}

/**
 * One turn at a time for many loops: `wait()` resolves waiters in arrival order, one per
 * macrotask (an immediate), so between two turns the event loop polls sockets. Per-loop
 * {@linkcode FairShare} yields are not enough when hundreds of loops are busy: their timers all
 * fall due together and run back to back (400 pipelining clients kept a normal client waiting
 * over 20 s). Here each busy loop gets one slice per turn, and a client that is not busy never
 * waits.
 *
 * @example
 * ```ts
 * const turns = new TurnQueue();
 * await turns.wait(); // after a slice of work, with more to do
 * ```
 */
export class TurnQueue {
  #waiting: (() => void)[] = [];
  #head = 0;
  #scheduled = false;
  /** When the event loop last got to wait (and so to poll sockets) between two turns. */
  #polledAt = performance.now();

  /** Loops waiting for a turn. */
  get waiting(): number {
    return this.#waiting.length - this.#head;
  }

  wait(): Promise<void> {
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.waiting === 0) return;
    this.#scheduled = true;
    // setImmediate, not setTimeout(0): chained timers are clamped (measured 2.3 ms a hop here)
    // and an immediate costs ~10 µs. But while immediates are ready the event loop never waits,
    // and the runtime then polls sockets only every few dozen iterations: 5 ms turns back to back
    // left reads 0.4-0.5 s stale while timers ran on time (idle and partial-line timers then
    // judged clients on bytes we had not read). So every POLL_EVERY_MS, the next turn waits for a
    // 1 ms timer (a 0 ms one is ready at once): the loop waits, polls every socket, and runs
    // what that brought first (a probe with a 20 ms period and 5 ms turns: reads at most 29 ms
    // stale). The hop costs throughput on a loaded box, so the period is long: 100 ms, far below
    // the 500 ms partial-line timer (bench/bulk.ts, one connection, paired, load ~24: ~5%).
    if (performance.now() - this.#polledAt >= POLL_EVERY_MS) {
      setTimeout(() => {
        this.#polledAt = performance.now();
        this.#turn();
      }, 1);
    } else setImmediate(() => this.#turn());
  }

  #turn(): void {
    this.#scheduled = false;
    const next = this.#waiting[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
      this.#waiting = this.#waiting.slice(this.#head);
      this.#head = 0;
    }
    next?.();
    this.#schedule();
  }
}
