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

/** How long a loop may run on ready reads before it yields a turn (ms). */
export const DEFAULT_SLICE_MS = 10;

/**
 * Tracks one loop's share: {@linkcode FairShare.turn} returns undefined while the loop is within
 * its slice, and otherwise a promise that resolves after one macrotask (timers and other
 * sockets' reads run first).
 *
 * @example
 * ```ts
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

  constructor(readonly sliceMs: number = DEFAULT_SLICE_MS) {}

  turn(): Promise<void> | undefined {
    if (performance.now() - this.#since < this.sliceMs) return undefined;
    return new Promise((resolve) =>
      setTimeout(() => {
        this.#since = performance.now();
        resolve();
      }, 0)
    );
  }
}
