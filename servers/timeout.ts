/**
 * Bounds on waits: a promise with a deadline, and a connection closed at its deadline (which
 * ends whatever read or write is pending on it). Every bounded wait of the herd and the
 * dashboard uses one of these.
 *
 * @module
 */

import { closeQuietly } from "./io.ts";

/**
 * `p`, or a rejection with `timed out after <ms> ms` (or `error`) once `ms` pass. A value that
 * arrives after the deadline goes to `onLate` (close a late connection), never lost silently.
 *
 * @example
 * ```ts
 * const conn = await withTimeout(Deno.connect({ port: 80 }), 5000, { onLate: (c) => c.close() });
 * ```
 */
export function withTimeout<T>(
  p: Promise<T>,
  ms: number,
  opts: { error?: () => Error; onLate?: (value: T) => void } = {},
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => {
      reject(opts.error?.() ?? new Error(`timed out after ${ms} ms`));
      p.then((v) => opts.onLate?.(v), () => {});
    }, ms);
    p.then((v) => {
      clearTimeout(t);
      resolve(v);
    }, (err) => {
      clearTimeout(t);
      reject(err);
    });
  });
}

/**
 * Closes `conn` once `ms` pass unless cleared first; `expired` tells afterwards whether it did
 * (so a failed read can be told apart from a timed-out one).
 *
 * @example
 * ```ts
 * declare const conn: Deno.Conn;
 * const buf = new Uint8Array(1024);
 * const timer = closeAfter(conn, 3000);
 * try {
 *   await conn.read(buf);
 * } finally {
 *   timer.clear();
 * }
 * ```
 */
export function closeAfter(
  conn: { close(): void },
  ms: number,
): { readonly expired: boolean; clear(): void } {
  const state = {
    expired: false,
    clear: () => clearTimeout(timer),
  };
  const timer = setTimeout(() => {
    state.expired = true;
    closeQuietly(conn);
  }, ms);
  return state;
}

/**
 * A timer that judges a remote party's silence on a socket this process reads: `onDue` runs once
 * `ms` have passed, one macrotask after the timer fired. A due timer can run before a read that
 * completed in the same poll (measured after a 140 ms stall of our own), and that read must be
 * seen first: it may prove the party alive and clear the timer. A timer that fires more than
 * `lateMs` late means our loop was stalled for long, with bytes possibly unread: it waits `ms`
 * again instead.
 *
 * @example
 * ```ts
 * declare const conn: Deno.Conn;
 * const buf = new Uint8Array(1024);
 * const timer = silenceTimer(5000, () => conn.close());
 * try {
 *   await conn.read(buf);
 * } finally {
 *   timer.clear();
 * }
 * ```
 */
export function silenceTimer(ms: number, onDue: () => void, lateMs = 100): { clear(): void } {
  let timer: ReturnType<typeof setTimeout>;
  const arm = () => {
    const armedAt = performance.now();
    timer = setTimeout(() => {
      if (performance.now() - armedAt - ms > lateMs) arm();
      else timer = setTimeout(onDue, 0);
    }, ms);
  };
  arm();
  return { clear: () => clearTimeout(timer) };
}

/**
 * `p`'s value, or undefined as soon as `signal` aborts (whichever comes first): a wait that a
 * stop cuts short. `p` goes on; a rejection after the abort is dropped.
 *
 * @example
 * ```ts
 * const stop = new AbortController();
 * const slow = new Promise<number>((r) => setTimeout(() => r(1), 10_000));
 * stop.abort();
 * await untilAborted(slow, stop.signal); // undefined, at once
 * ```
 */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  return new Promise<T | undefined>((resolve, reject) => {
    const abort = () => resolve(undefined);
    if (signal.aborted) abort();
    else signal.addEventListener("abort", abort, { once: true });
    p.then((v) => {
      signal.removeEventListener("abort", abort);
      resolve(v);
    }, (err) => {
      signal.removeEventListener("abort", abort);
      reject(err);
    });
  });
}
