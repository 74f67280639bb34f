/**
 * Picks and builds the Places provider from configuration, and describes it for the start-up
 * line. The caller reads `GOOGLE_PLACES_API_KEY` and passes it in: this module never touches the
 * environment, and never prints the key.
 *
 * @module
 */

import { createGoogleLegacyProvider, LEGACY_API_ORIGIN } from "./google_legacy.ts";
import { createGoogleNewProvider, NEW_API_ORIGIN } from "./google_new.ts";
import { withLoadControl } from "./load_control.ts";
import { createOfflineProvider } from "./offline.ts";
import type { PlacesProvider } from "./provider.ts";

/** The provider kinds. */
export type PlacesKind = "offline" | "new" | "legacy";

/** Configuration for {@linkcode createPlacesProvider}. */
export interface PlacesOptions {
  /** Which provider; default `new` when `apiKey` is set, else `offline`. */
  places?: PlacesKind;
  /** Google API key (required for `new` and `legacy`). */
  apiKey?: string;
  /** Replaces Google's origin (path and parameters stay Google's); for fakes and proxies. */
  baseUrl?: string;
  /** Deadline per query, queue time included, ms (default 5000). */
  timeoutMs?: number;
  /** Most Google requests in flight (default 16). */
  concurrency?: number;
  /** Answer cache lifetime, seconds (default 0: off). */
  cacheTtlSeconds?: number;
  /** Most queries waiting for a free upstream slot (default 10000). */
  maxQueue?: number;
}

/** Resolved settings, shared by the factory and the description so they can never disagree. */
interface Resolved {
  kind: PlacesKind;
  apiKey: string;
  baseUrl?: string;
  timeoutMs: number;
  concurrency: number;
  cacheTtlSeconds: number;
  maxQueue: number;
}

function resolve(opts: PlacesOptions): Resolved {
  const apiKey = opts.apiKey?.trim() ?? "";
  const kind = opts.places ?? (apiKey ? "new" : "offline");
  if (kind !== "offline" && kind !== "new" && kind !== "legacy") {
    throw new Error(`Unknown places provider "${kind}": use offline, new or legacy`);
  }
  if (kind !== "offline" && !apiKey) {
    throw new Error(
      `Places provider "${kind}" needs a Google API key: set GOOGLE_PLACES_API_KEY, ` +
        `or use the offline provider`,
    );
  }
  // A key goes in a header (new) or the query (legacy): a space or control byte in it failed
  // every WHATSAT ("Invalid header value") of a server that started fine (adv16). Google's keys
  // are printable ASCII; the message never quotes the key.
  if (kind !== "offline" && /[^\x21-\x7e]/.test(apiKey)) {
    throw new Error(
      "GOOGLE_PLACES_API_KEY must be printable ASCII without spaces or control characters",
    );
  }
  const timeoutMs = opts.timeoutMs ?? 5000;
  const concurrency = opts.concurrency ?? 16;
  const cacheTtlSeconds = opts.cacheTtlSeconds ?? 0;
  const maxQueue = opts.maxQueue ?? 10000;
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw new Error(`Places timeout must be a positive number of ms, got ${timeoutMs}`);
  }
  if (!(Number.isInteger(concurrency) && concurrency >= 1)) {
    throw new Error(`Places concurrency must be an integer ≥ 1, got ${concurrency}`);
  }
  if (!(Number.isFinite(cacheTtlSeconds) && cacheTtlSeconds >= 0)) {
    throw new Error(`Places cache TTL must be ≥ 0 seconds, got ${cacheTtlSeconds}`);
  }
  if (!(Number.isInteger(maxQueue) && maxQueue >= 0)) {
    throw new Error(`Places queue limit must be an integer ≥ 0, got ${maxQueue}`);
  }
  let baseUrl: string | undefined;
  if (opts.baseUrl !== undefined) {
    let url: URL;
    try {
      url = new URL(opts.baseUrl);
    } catch {
      throw new Error("Places base URL is not a valid URL");
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new Error("Places base URL must be http or https");
    }
    // Only the origin is used, and an origin holds no user:password: dropped silently, a proxy's
    // credentials were never sent and every query failed as the proxy's 407 (adv16). Refused
    // without quoting them: this message reaches the terminal.
    if (url.username !== "" || url.password !== "") {
      throw new Error(
        "Places base URL must not hold user:password@ (they would not be sent); " +
          "use a proxy that needs no credentials",
      );
    }
    // Likewise a query or fragment (a proxy's token, say) would be dropped without a word.
    if (url.search !== "" || url.hash !== "") {
      throw new Error(
        "Places base URL must not hold a ?query or #fragment (only its origin is used)",
      );
    }
    // Only the origin is replaced: Google's paths and parameters are appended to it.
    baseUrl = url.origin;
  }
  return { kind, apiKey, baseUrl, timeoutMs, concurrency, cacheTtlSeconds, maxQueue };
}

/**
 * Which provider the same options would build (throws as {@linkcode createPlacesProvider} does).
 *
 * @example
 * ```ts
 * placesKind({}); // "offline"
 * placesKind({ apiKey: "…" }); // "new"
 * ```
 */
export function placesKind(opts: PlacesOptions = {}): PlacesKind {
  return resolve(opts).kind;
}

/**
 * Builds the configured provider. Google providers get load control (coalescing, concurrency
 * cap, queue deadline, optional cache); the offline one answers in microseconds from memory and
 * has nothing upstream to protect, so it is used bare.
 *
 * Throws (with a message fit for the user, never containing the key) on a bad configuration,
 * e.g. `new` or `legacy` without a key; the caller turns that into exit status 2.
 *
 * @example
 * ```ts
 * const provider = createPlacesProvider({ apiKey: Deno.env.get("GOOGLE_PLACES_API_KEY") });
 * console.log(describeProvider({ apiKey: Deno.env.get("GOOGLE_PLACES_API_KEY") }));
 * ```
 */
export function createPlacesProvider(opts: PlacesOptions = {}): PlacesProvider {
  const r = resolve(opts);
  if (r.kind === "offline") return createOfflineProvider();
  const upstream = r.kind === "new"
    ? createGoogleNewProvider({ apiKey: r.apiKey, baseUrl: r.baseUrl, timeoutMs: r.timeoutMs })
    : createGoogleLegacyProvider({ apiKey: r.apiKey, baseUrl: r.baseUrl, timeoutMs: r.timeoutMs });
  return withLoadControl(upstream, {
    concurrency: r.concurrency,
    maxQueue: r.maxQueue,
    timeoutMs: r.timeoutMs,
    cacheTtlSeconds: r.cacheTtlSeconds,
  });
}

/**
 * One line describing the provider the same options would build, for the start-up log. Never
 * includes the key. Throws on the same bad configurations as {@linkcode createPlacesProvider}.
 *
 * @example
 * ```ts
 * describeProvider({});
 * // "offline (GeoNames cities, CC BY 4.0)"
 * describeProvider({ apiKey: "…" });
 * // "new (Places API (New) at https://places.googleapis.com; timeout 5000 ms, 16 in flight, cache off)"
 * ```
 */
export function describeProvider(opts: PlacesOptions = {}): string {
  const r = resolve(opts);
  if (r.kind === "offline") return "offline (GeoNames cities, CC BY 4.0)";
  const api = r.kind === "new" ? "Places API (New)" : "Places API (Legacy) Nearby Search";
  const origin = r.baseUrl ?? (r.kind === "new" ? NEW_API_ORIGIN : LEGACY_API_ORIGIN);
  const cache = r.cacheTtlSeconds > 0 ? `cache ${r.cacheTtlSeconds} s` : "cache off";
  return `${r.kind} (${api} at ${origin}; timeout ${r.timeoutMs} ms, ` +
    `${r.concurrency} in flight, ${cache})`;
}
