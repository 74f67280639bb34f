/**
 * Load control in front of an upstream Places provider, so a burst of WHATSATs cannot become a
 * burst of paid Google requests:
 *
 * - coalescing: identical queries (same provider, point, radius, bound) already in flight share
 *   one upstream request; the sharers' answers say `coalesced: true`;
 * - a concurrency cap (default 16 upstream requests in flight), the rest waiting in a bounded
 *   FIFO queue (default 10000; beyond it, `OVER_QUERY_LIMIT` at once);
 * - one deadline per query (default 5000 ms) that counts queue time: a query still queued at its
 *   deadline answers `UNKNOWN_ERROR` without ever being sent; a running one is aborted;
 * - an optional answer cache (TTL in seconds, default 0 = off) for `OK`/`ZERO_RESULTS` answers,
 *   bounded in entries and in bytes (an upstream decides how big its answers are).
 *
 * Answers (and their bodies) may be shared between callers: treat them as read-only.
 *
 * @module
 */

import { errorAnswer } from "./bodies.ts";
import type { PlacesAnswer, PlacesProvider, PlacesQuery } from "./provider.ts";

/** Options for {@linkcode withLoadControl}. */
export interface LoadControlOptions {
  /** Most upstream requests in flight at once (default 16). */
  concurrency?: number;
  /** Most queries waiting for a slot (default 10000). */
  maxQueue?: number;
  /** Deadline per query, queue time included, ms (default 5000). */
  timeoutMs?: number;
  /** Keep successful answers this many seconds (default 0: no cache). */
  cacheTtlSeconds?: number;
  /** Most cached answers kept (default 10000); the oldest go first. */
  maxCacheEntries?: number;
  /**
   * Most bytes of cached answers (their JSON text; default 64 MiB); the oldest go first, and an
   * answer larger than this is not cached. A body may be up to 1 MiB: by count alone, 10000 of
   * them were ~10 GB.
   */
  maxCacheBytes?: number;
  /** Clock for cache expiry, ms (tests inject one; deadlines always use the real clock). */
  now?: () => number;
}

/** Counters for logs, the dashboard and tests. */
export interface LoadControlStats {
  /** Upstream requests running now. */
  active: number;
  /** Queries waiting for a slot now. */
  queued: number;
  /** Highest `active` seen. */
  peakActive: number;
  /** Upstream requests started in total. */
  upstreamRequests: number;
  /** Queries answered by sharing an in-flight request. */
  coalesced: number;
  /** Queries answered from the cache. */
  cacheHits: number;
  /** Queries answered with a timeout (queued or running). */
  timeouts: number;
  /** Queries refused because the queue was full. */
  rejected: number;
}

/** A provider with load control, exposing its counters. */
export interface LoadControlledProvider extends PlacesProvider {
  /** A snapshot of the counters. */
  stats(): LoadControlStats;
}

/** Default bound on the bytes of cached answers (see {@linkcode LoadControlOptions}). */
const DEFAULT_CACHE_BYTES = 64 * 1024 * 1024;

/** A queued query with less time than this left is timed out rather than sent. */
const MIN_USEFUL_MS = 10;

/** One upstream request, shared by every identical query that arrives while it is pending. */
interface Job {
  key: string;
  query: PlacesQuery;
  controller: AbortController;
  state: "queued" | "running" | "done";
  /** performance.now() at which the query times out. */
  deadline: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  resolve: (answer: PlacesAnswer) => void;
  promise: Promise<PlacesAnswer>;
}

/**
 * Wraps a provider with coalescing, a concurrency cap, a bounded queue, deadlines and a cache.
 *
 * @example
 * ```ts
 * import { createGoogleNewProvider } from "./google_new.ts";
 *
 * const apiKey = Deno.env.get("GOOGLE_PLACES_API_KEY")!;
 * const provider = withLoadControl(createGoogleNewProvider({ apiKey }), {
 *   concurrency: 16,
 *   timeoutMs: 5000,
 *   cacheTtlSeconds: 30,
 * });
 * const answer = await provider.search({ lat: 34.06893, lng: -118.445127, radiusKm: 10, bound: 5 });
 * console.log(answer.coalesced, provider.stats().upstreamRequests);
 * ```
 */
export function withLoadControl(
  inner: PlacesProvider,
  opts: LoadControlOptions = {},
): LoadControlledProvider {
  const concurrency = Math.max(1, Math.floor(opts.concurrency ?? 16));
  const maxQueue = Math.max(0, Math.floor(opts.maxQueue ?? 10000));
  const timeoutMs = opts.timeoutMs ?? 5000;
  const ttlMs = Math.max(0, (opts.cacheTtlSeconds ?? 0) * 1000);
  const maxCacheEntries = Math.max(1, opts.maxCacheEntries ?? 10000);
  const maxCacheBytes = Math.max(0, opts.maxCacheBytes ?? DEFAULT_CACHE_BYTES);
  const now = opts.now ?? (() => performance.now());

  const pending = new Map<string, Job>();
  const cache = new Map<string, { answer: PlacesAnswer; expires: number; bytes: number }>();
  let cacheBytes = 0;
  // FIFO with a head index: shift() on a 10000-entry array would be O(n) per dequeue.
  let queue: Job[] = [];
  let head = 0;
  let closed = false;
  const stats: LoadControlStats = {
    active: 0,
    queued: 0,
    peakActive: 0,
    upstreamRequests: 0,
    coalesced: 0,
    cacheHits: 0,
    timeouts: 0,
    rejected: 0,
  };

  function keyOf(q: PlacesQuery): string {
    return `${inner.name}|${q.lat}|${q.lng}|${q.radiusKm}|${q.bound}`;
  }

  function finish(job: Job, answer: PlacesAnswer): void {
    if (job.state === "done") return;
    if (job.state === "queued") stats.queued--;
    job.state = "done";
    clearTimeout(job.timer);
    if (pending.get(job.key) === job) pending.delete(job.key);
    const status = answer.body.status;
    if (ttlMs > 0 && !closed && (status === "OK" || status === "ZERO_RESULTS")) {
      remember(job.key, answer);
    }
    job.resolve(answer);
  }

  function remember(key: string, answer: PlacesAnswer): void {
    forget(key);
    // Measured once per upstream answer (the cost of one more serialisation, never per hit).
    const bytes = JSON.stringify(answer.body).length + key.length;
    if (bytes > maxCacheBytes) return;
    cache.set(key, { answer, expires: now() + ttlMs, bytes });
    cacheBytes += bytes;
    while (cache.size > maxCacheEntries || cacheBytes > maxCacheBytes) {
      // Map iteration is insertion order: the first key is the oldest entry.
      forget(cache.keys().next().value!);
    }
  }

  function forget(key: string): void {
    const entry = cache.get(key);
    if (entry === undefined) return;
    cache.delete(key);
    cacheBytes -= entry.bytes;
  }

  function cached(key: string): PlacesAnswer | undefined {
    const entry = cache.get(key);
    if (!entry) return undefined;
    if (entry.expires > now()) return entry.answer;
    forget(key);
    return undefined;
  }

  function start(job: Job): void {
    job.state = "running";
    stats.active++;
    stats.upstreamRequests++;
    stats.peakActive = Math.max(stats.peakActive, stats.active);
    let upstream: Promise<PlacesAnswer>;
    try {
      upstream = inner.search(job.query, { signal: job.controller.signal });
    } catch (err) {
      upstream = Promise.reject(err);
    }
    upstream
      .then((answer) => finish(job, answer))
      .catch(() => finish(job, errorAnswer("UNKNOWN_ERROR", "Places provider failed")))
      .finally(() => {
        // The slot is held until the upstream request really ends, even if the query already
        // timed out: that is what "in flight" means to Google's quota.
        stats.active--;
        pump();
      });
  }

  function pump(): void {
    while (stats.active < concurrency && head < queue.length) {
      const job = queue[head++];
      if (job.state !== "queued") continue; // timed out while waiting
      if (job.deadline - performance.now() < MIN_USEFUL_MS) {
        // Its deadline is about to fire: sending it would spend quota on an answer nobody gets.
        onDeadline(job);
        continue;
      }
      stats.queued--;
      start(job);
    }
    if (head === queue.length) {
      queue = [];
      head = 0;
    } else if (head > 1024 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
  }

  function onDeadline(job: Job): void {
    if (job.state === "done") return;
    stats.timeouts++;
    const wasQueued = job.state === "queued";
    job.controller.abort(timeoutError(`Places request timed out after ${timeoutMs} ms`));
    const where = wasQueued ? " waiting for a free upstream slot" : "";
    finish(
      job,
      errorAnswer("UNKNOWN_ERROR", `Places request timed out after ${timeoutMs} ms${where}`),
    );
  }

  function newJob(key: string, query: PlacesQuery): Job {
    let resolve!: (answer: PlacesAnswer) => void;
    const promise = new Promise<PlacesAnswer>((r) => (resolve = r));
    const job: Job = {
      key,
      query,
      controller: new AbortController(),
      state: "queued",
      deadline: performance.now() + timeoutMs,
      timer: undefined,
      resolve,
      promise,
    };
    job.timer = setTimeout(() => onDeadline(job), timeoutMs);
    return job;
  }

  return {
    name: inner.name,

    async search(query: PlacesQuery): Promise<PlacesAnswer> {
      const t0 = performance.now();
      if (closed) return errorAnswer("UNKNOWN_ERROR", "Places provider is closed");
      const key = keyOf(query);
      const hit = ttlMs > 0 ? cached(key) : undefined;
      if (hit) {
        stats.cacheHits++;
        return { ...hit, coalesced: true, cached: true, latencyMs: performance.now() - t0 };
      }
      const shared = pending.get(key);
      if (shared) {
        stats.coalesced++;
        const answer = await shared.promise;
        return { ...answer, coalesced: true, cached: false, latencyMs: performance.now() - t0 };
      }
      const free = stats.active < concurrency;
      if (!free && stats.queued >= maxQueue) {
        stats.rejected++;
        return errorAnswer("OVER_QUERY_LIMIT", `Too many Places queries waiting (${maxQueue})`);
      }
      const job = newJob(key, query);
      pending.set(key, job);
      if (free) start(job);
      else {
        queue.push(job);
        stats.queued++;
      }
      const answer = await job.promise;
      return { ...answer, coalesced: false, cached: false, latencyMs: performance.now() - t0 };
    },

    stats(): LoadControlStats {
      return { ...stats };
    },

    close(): void {
      if (closed) return;
      closed = true;
      for (const job of [...pending.values()]) {
        job.controller.abort(new Error("Places provider closed"));
        finish(job, errorAnswer("UNKNOWN_ERROR", "Places provider is closed"));
      }
      queue = [];
      head = 0;
      cache.clear();
      cacheBytes = 0;
      inner.close?.();
    },
  };
}

/** An abort reason the upstream layer reports as a timeout (by its name). */
function timeoutError(message: string): Error {
  const err = new Error(message);
  err.name = "TimeoutError";
  return err;
}
