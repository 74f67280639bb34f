/**
 * Wall-clock time in integer nanoseconds, for the AT line's exact time difference.
 *
 * Read from the system's real-time clock at every call through `Temporal.Now.instant()`, which
 * has sub-microsecond resolution (measured: ~1 µs steps, ~0.8 µs a call). The former
 * `Date.now()` anchor had whole milliseconds, so the server clock ran up to ~1 ms behind the
 * system clock and a client on the same host that stamped `time.time()` and sent at once got
 * negative differences. `performance.now()` is finer but is a monotonic clock that drifts from
 * (and does not follow steps of) the wall clock, so it is not used here.
 *
 * @module
 */

/** Test-only skew (env HERD_CLOCK_OFFSET_MS): shows that links never depend on clocks agreeing. */
const offsetMs = Math.trunc(Number(Deno.env.get("HERD_CLOCK_OFFSET_MS") ?? 0));
const offsetNs = BigInt(Number.isSafeInteger(offsetMs) ? offsetMs : 0) * 1_000_000n;

/**
 * Now, as nanoseconds since the Unix epoch.
 *
 * @example
 * ```ts
 * const ns = nowNs(); // e.g. 1763957556123456789n
 * ```
 */
export function nowNs(): bigint {
  return Temporal.Now.instant().epochNanoseconds + offsetNs;
}
