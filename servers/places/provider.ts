/**
 * The Places provider interface: every source of "what is near this point" (the offline index,
 * Google's Places API (New), Google's legacy Nearby Search) answers in Google's legacy Nearby
 * Search shape, so the protocol layer formats every provider's answer the same way.
 *
 * @module
 */

/** One place in Google's legacy Nearby Search shape. Fields beyond these pass through untouched. */
export interface LegacyPlace {
  name?: string;
  place_id?: string;
  geometry?: { location: { lat: number; lng: number }; [key: string]: unknown };
  vicinity?: string;
  types?: string[];
  [key: string]: unknown;
}

/** A Nearby Search answer in Google's legacy shape (what WHATSAT prints after the AT line). */
export interface LegacyNearbyResponse {
  html_attributions: string[];
  results: LegacyPlace[];
  status: string;
  next_page_token?: string;
  error_message?: string;
  [key: string]: unknown;
}

/** What WHATSAT asks a provider: a point, a radius and how many results at most. */
export interface PlacesQuery {
  /** Latitude in decimal degrees. */
  lat: number;
  /** Longitude in decimal degrees. */
  lng: number;
  /** Radius in kilometres, 0 < radiusKm ≤ 50. */
  radiusKm: number;
  /** Upper bound on results, 0 ≤ bound ≤ 20. */
  bound: number;
}

/** Metadata a provider reports with each answer, for events and logs. */
export interface PlacesAnswer {
  /** The legacy-shaped body, `results` already cut to the bound. */
  body: LegacyNearbyResponse;
  /** True when this answer was shared with an identical query already in flight (or cached). */
  coalesced?: boolean;
  /** True when this answer came from the answer cache (no upstream request at all). */
  cached?: boolean;
  /** Time this query spent inside the provider (queue wait included), ms, where measured. */
  latencyMs?: number;
  /** Set when the upstream's body was refused (over the size or nesting bound): why. */
  rejected?: string;
}

/**
 * Per-call options. The signal lets a wrapper (queue deadline, shutdown) cancel an upstream
 * request early; providers answer a cancelled search with a timeout body instead of rejecting.
 */
export interface SearchOptions {
  signal?: AbortSignal;
}

/**
 * A source of nearby places. `search` never rejects: failures come back as a legacy body with
 * `"results": []`, a non-OK `status` and a short `error_message` that never contains a secret.
 *
 * @example
 * ```ts
 * declare const provider: PlacesProvider;
 *
 * const answer = await provider.search({ lat: 34.06893, lng: -118.445127, radiusKm: 10, bound: 5 });
 * console.log(answer.body.status, answer.body.results.length);
 * ```
 */
export interface PlacesProvider {
  /** Short name for logs and events: "offline", "new" or "legacy". */
  readonly name: string;
  search(query: PlacesQuery, options?: SearchOptions): Promise<PlacesAnswer>;
  /**
   * Prepares what searches need (the offline index); never rejects (a failure is the searches'
   * to answer). `Herd.start` runs it beside the servers' start and waits for it.
   */
  warm?(): Promise<void>;
  /** Releases timers and connections. */
  close?(): void;
}
