/**
 * Wall-clock time in integer nanoseconds, for the AT line's exact time difference.
 *
 * `Date.now()` has only millisecond resolution; `performance.now()` is finer but drifts from the
 * wall clock, so the offset between the two is re-anchored whenever they disagree by over 2 ms (Date.now() truncates to 1 ms).
 *
 * @module
 */

let originNs = anchor();
/** Test-only skew (env HERD_CLOCK_OFFSET_MS): shows that links never depend on clocks agreeing. */
const offsetMs = Math.trunc(Number(Deno.env.get("HERD_CLOCK_OFFSET_MS") ?? 0));
const offsetNs = BigInt(Number.isSafeInteger(offsetMs) ? offsetMs : 0) * 1_000_000n;
let lastCheck = performance.now();

function anchor(): bigint {
  return BigInt(Date.now()) * 1_000_000n - BigInt(Math.round(performance.now() * 1e6));
}

/**
 * Now, as nanoseconds since the Unix epoch.
 *
 * @example
 * ```ts
 * const ns = nowNs(); // e.g. 1763957556123456789n
 * ```
 */
export function nowNs(): bigint {
  const perf = performance.now();
  if (perf - lastCheck > 1000) {
    lastCheck = perf;
    const fresh = anchor();
    const drift = fresh > originNs ? fresh - originNs : originNs - fresh;
    if (drift > 2_000_000n) originNs = fresh;
  }
  return originNs + BigInt(Math.round(perf * 1e6)) + offsetNs;
}
