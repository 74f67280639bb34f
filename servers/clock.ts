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

/** The variable of the test-only skew. */
export const CLOCK_OFFSET_VARIABLE = "HERD_CLOCK_OFFSET_MS";
/** Largest skew taken, ms (ten years either way: enough to show clocks do not matter). */
const MAX_OFFSET_MS = 10 * 366 * 86_400_000;

/**
 * Reads a skew in ms as written in `HERD_CLOCK_OFFSET_MS`: an optional sign and decimal digits,
 * within ten years. Returns the problem, as text, for anything else (`abc`, `1e3`, `5.5`, ` 5`):
 * the CLI refuses it (exit 2) rather than run at an unshifted clock the user did not ask for.
 *
 * @example
 * ```ts
 * parseClockOffset("-300000"); // { ms: -300000 }
 * parseClockOffset("abc"); // { problem: "must be a whole number of ms ..." }
 * ```
 */
export function parseClockOffset(text: string): { ms: number } | { problem: string } {
  if (!/^[+-]?\d+$/.test(text)) {
    return { problem: `must be a whole number of ms, e.g. -300000 (got ${JSON.stringify(text)})` };
  }
  const ms = Number(text);
  if (Math.abs(ms) > MAX_OFFSET_MS) {
    return { problem: `must be within ±${MAX_OFFSET_MS} ms (ten years), got ${text}` };
  }
  return { ms };
}

/** The skew's text, or undefined when unset, empty or not readable (no env permission). */
export function clockOffsetText(): string | undefined {
  try {
    return Deno.env.get(CLOCK_OFFSET_VARIABLE) || undefined;
  } catch {
    return undefined;
  }
}

/** Test-only skew (env HERD_CLOCK_OFFSET_MS): shows that links never depend on clocks agreeing. */
const offsetText = clockOffsetText();
const parsed = offsetText === undefined ? { ms: 0 } : parseClockOffset(offsetText);
const offsetNs = BigInt("ms" in parsed ? parsed.ms : 0) * 1_000_000n;

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
