/**
 * Counting the timers code under test starts.
 *
 * @module
 */

/** The real `setTimeout`, for a test's own waits while {@linkcode countTimers} counts. */
export const realSetTimeout: typeof setTimeout = globalThis.setTimeout;

/**
 * Counts every `setTimeout` started until `stop()` (the delays asked, in order); the test's own
 * waits go through {@linkcode realSetTimeout} to stay out of the count.
 */
export function countTimers(): { delays: number[]; stop(): void } {
  const delays: number[] = [];
  globalThis.setTimeout = ((fn: () => void, ms?: number) => {
    delays.push(ms ?? 0);
    return realSetTimeout(fn, ms);
  }) as typeof setTimeout;
  return { delays, stop: () => (globalThis.setTimeout = realSetTimeout) };
}
