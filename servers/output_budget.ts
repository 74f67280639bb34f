/**
 * One budget for reply bytes buffered in this process (finished replies waiting to be written,
 * and writes in flight), across every client connection of every server here.
 *
 * Per-connection caps (servers/connection.ts) bound one connection, not four hundred: 400
 * connections pipelining WHATSATs without reading took a server from 166 to 1,673 MiB, and its
 * event loop was so busy producing replies nobody read that a normal client waited over 20 s.
 * Over the budget, connections holding more than an even share stop being read (paused), so no
 * more work is done for them; a paused one whose writes make no progress for `cutAfterMs` is
 * cut, largest first. A connection that reads its replies holds next to nothing and is never
 * paused.
 *
 * @module
 */

/** What the budget needs from a connection. */
export interface OutputHolder {
  /** Reply bytes this connection buffers now. */
  readonly held: number;
  /** When its last write finished (performance.now()), or started if none finished since. */
  readonly progressAt: number;
  /** Wakes it if it is paused: the budget has room again. */
  wake(): void;
  /** Closes it: it held the most and made no progress. */
  cut(reason: string): void;
}

/** Defaults: 64 MiB for the process; cut after 2 s without progress while over budget. */
export const DEFAULT_OUTPUT_BUDGET = { bytes: 64 * 1024 * 1024, cutAfterMs: 2000 };
/** How often an over-budget process looks for connections to cut (ms). */
const SWEEP_MS = 250;

/**
 * The process's reply-byte budget.
 *
 * @example
 * ```ts
 * declare const conn: OutputHolder; // a ClientConnection
 * declare const text: string; // a reply
 * declare function stopReading(): void;
 *
 * outputBudget.add(conn, text.length); // queued
 * if (outputBudget.paused(conn)) stopReading();
 * outputBudget.add(conn, -text.length); // written
 * ```
 */
export class OutputBudget {
  bytes: number;
  cutAfterMs: number;
  #total = 0;
  /**
   * Connections that held bytes since they opened (removed when they close, not each time they
   * write everything: a set that shrinks and grows again reallocates its table, a few times per
   * reply). `#holding` counts those that hold bytes now.
   */
  #holders = new Set<OutputHolder>();
  #holding = 0;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  /** Connections cut so far (for tests and metrics). */
  cuts = 0;

  constructor(bytes = DEFAULT_OUTPUT_BUDGET.bytes, cutAfterMs = DEFAULT_OUTPUT_BUDGET.cutAfterMs) {
    this.bytes = bytes;
    this.cutAfterMs = cutAfterMs;
  }

  /** Bytes buffered now, all connections together. */
  get total(): number {
    return this.#total;
  }

  /** `h` buffers `delta` more bytes (negative: fewer); call after its `held` changed. */
  add(h: OutputHolder, delta: number): void {
    if (delta === 0) return;
    const wasOver = this.over;
    this.#total += delta;
    const was = h.held - delta > 0;
    const now = h.held > 0;
    if (now && !was) {
      this.#holding++;
      this.#holders.add(h);
    } else if (was && !now) this.#holding--;
    if (this.over && this.#sweeper === undefined) {
      this.#sweeper = setInterval(() => this.#sweep(), SWEEP_MS);
      Deno.unrefTimer(this.#sweeper);
    }
    if (wasOver && !this.over) {
      if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
      this.#sweeper = undefined;
      for (const other of [...this.#holders]) other.wake();
    }
  }

  /** A connection that closed (its `held` now 0): the `held` bytes it had are released. */
  remove(h: OutputHolder, held: number): void {
    this.add(h, -held);
    this.#holders.delete(h);
  }

  /** True while the buffered bytes are over budget. */
  get over(): boolean {
    return this.#total >= this.bytes;
  }

  /** True when `h` must stop being read: over budget, and it holds at least an even share. */
  paused(h: OutputHolder): boolean {
    return this.over && h.held > 0 && h.held >= this.bytes / Math.max(1, this.#holding);
  }

  /** Cuts stalled paused holders, largest first, until back under budget. */
  #sweep(): void {
    const now = performance.now();
    const stalled = [...this.#holders]
      .filter((h) => this.paused(h) && now - h.progressAt >= this.cutAfterMs)
      .sort((a, b) => b.held - a.held);
    for (const h of stalled) {
      if (!this.over) break;
      this.cuts++;
      h.cut("output budget exceeded");
    }
  }
}

/** The one budget of this process. */
export const outputBudget: OutputBudget = new OutputBudget();
