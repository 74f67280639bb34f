/**
 * Google Places API (Legacy) provider: `GET /maps/api/place/nearbysearch/json`. The answer is
 * already in the shape WHATSAT prints, so it passes through with `results` cut to the bound and
 * Google's `status` kept; only failures are rewritten (as legacy error bodies). `search` never
 * rejects, and the API key (which legacy sends in the URL) never appears in an answer.
 *
 * @module
 */

import {
  checkQuery,
  emptyAnswer,
  errorAnswer,
  isStatusWord,
  plainNumber,
  radiusMetres,
  redactDeep,
  shortMessage,
} from "./bodies.ts";
import type {
  LegacyNearbyResponse,
  LegacyPlace,
  PlacesAnswer,
  PlacesProvider,
  PlacesQuery,
  SearchOptions,
} from "./provider.ts";
import {
  fetchUpstream,
  googleErrorMessage,
  statusForHttp,
  type UpstreamOutcome,
} from "./upstream.ts";

/** Google's origin for the legacy API. */
export const LEGACY_API_ORIGIN = "https://maps.googleapis.com";

/** Options for {@linkcode createGoogleLegacyProvider}. */
export interface GoogleLegacyOptions {
  /** The Google API key (legacy takes it as the `key` query parameter). */
  apiKey: string;
  /** Replaces `https://maps.googleapis.com` (tests point this at a fake server). */
  baseUrl?: string;
  /** Deadline for one upstream exchange, ms (default 5000). */
  timeoutMs?: number;
}

/**
 * The request path and query for a search. Coordinates are printed from the numbers (no `+`,
 * which a query string would decode as a space; never exponent form), radius in metres.
 *
 * @example
 * ```ts
 * legacyRequestPath({ lat: 34.06893, lng: -118.445127, radiusKm: 10, bound: 5 }, "KEY");
 * // "/maps/api/place/nearbysearch/json?location=34.06893,-118.445127&radius=10000&key=KEY"
 * ```
 */
export function legacyRequestPath(query: PlacesQuery, apiKey: string): string {
  const location = `${plainNumber(query.lat)},${plainNumber(query.lng)}`;
  const radius = plainNumber(radiusMetres(query.radiusKm));
  return `/maps/api/place/nearbysearch/json?location=${location}&radius=${radius}` +
    `&key=${encodeURIComponent(apiKey)}`;
}

/**
 * Creates the legacy Nearby Search provider.
 *
 * Bound 0 answers `ZERO_RESULTS` without calling Google, as the New and offline providers do
 * (legacy cannot ask for fewer than 20, so a call would be paid for and thrown away).
 *
 * @example
 * ```ts
 * const provider = createGoogleLegacyProvider({ apiKey: Deno.env.get("GOOGLE_PLACES_API_KEY")! });
 * const { body } = await provider.search({ lat: 34.06893, lng: -118.445127, radiusKm: 10, bound: 5 });
 * ```
 */
export function createGoogleLegacyProvider(opts: GoogleLegacyOptions): PlacesProvider {
  const origin = (opts.baseUrl ?? LEGACY_API_ORIGIN).replace(/\/+$/, "");
  const timeoutMs = opts.timeoutMs ?? 5000;
  const secrets = [opts.apiKey];

  return {
    name: "legacy",
    async search(query: PlacesQuery, options?: SearchOptions): Promise<PlacesAnswer> {
      const invalid = checkQuery(query);
      if (invalid) return invalid;
      if (query.bound === 0) return emptyAnswer();
      const url = origin + legacyRequestPath(query, opts.apiKey);
      const out = await fetchUpstream(url, { method: "GET" }, {
        timeoutMs,
        signal: options?.signal,
        secrets,
      });
      return translateLegacyResponse(out, query.bound, secrets);
    },
  };
}

/**
 * Checks and trims a legacy answer: Google's body with `results` cut to the bound and every
 * string redacted; failures as legacy error bodies (Google's status where it gave one).
 *
 * @example
 * ```ts
 * const json = { html_attributions: [], results: [{ name: "A" }, { name: "B" }], status: "OK" };
 * translateLegacyResponse({ kind: "response", httpStatus: 200, json, parsed: true }, 1, []);
 * // { body: { html_attributions: [], results: [{ name: "A" }], status: "OK" } }
 * ```
 */
export function translateLegacyResponse(
  out: UpstreamOutcome,
  bound: number,
  secrets: readonly string[],
): PlacesAnswer {
  if (out.kind === "failure") {
    const answer = errorAnswer("UNKNOWN_ERROR", out.message, secrets);
    return out.reason === "rejected" ? { ...answer, rejected: answer.body.error_message } : answer;
  }
  const ok = out.httpStatus >= 200 && out.httpStatus <= 299;
  if (!out.parsed) {
    const message = ok
      ? "Places API answer is not JSON"
      : `Places API answered HTTP ${out.httpStatus}`;
    return errorAnswer(ok ? "UNKNOWN_ERROR" : statusForHttp(out.httpStatus), message);
  }
  const json = out.json;
  const obj = json !== null && typeof json === "object" && !Array.isArray(json)
    ? json as Record<string, unknown>
    : undefined;
  const status = typeof obj?.status === "string" ? obj.status : undefined;
  if (!ok) {
    // Google's own status where it gave a non-OK one; otherwise one derived from HTTP.
    const message = googleErrorMessage(json, secrets) ??
      `Places API answered HTTP ${out.httpStatus}`;
    const useGoogle = status !== undefined && status !== "OK" && isStatusWord(status);
    return errorAnswer(useGoogle ? status : statusForHttp(out.httpStatus), message, secrets);
  }
  if (!obj || status === undefined || (obj.results !== undefined && !Array.isArray(obj.results))) {
    return errorAnswer("UNKNOWN_ERROR", "Places API answer is not a Nearby Search response");
  }
  // The status goes into the reply, every event and a metrics label: only a status word
  // (Google's are at most 16 chars), never text an upstream chose (100 KB of it was kept).
  if (!isStatusWord(status)) {
    return errorAnswer("UNKNOWN_ERROR", "Places API answer has no valid status");
  }
  const results = Array.isArray(obj.results) ? obj.results as LegacyPlace[] : [];
  // PLACES_API.md: OK means "at least one result". An OK with none is answered as the New and
  // offline providers answer an empty search (bound 0 never gets here).
  if (status === "OK" && results.length === 0) return emptyAnswer();
  const body: LegacyNearbyResponse = {
    ...obj,
    html_attributions: Array.isArray(obj.html_attributions)
      ? obj.html_attributions as string[]
      : [],
    results: status === "OK" ? results.slice(0, bound) : [],
    status,
  };
  if (typeof body.error_message === "string") {
    body.error_message = shortMessage(body.error_message, secrets);
  } else if (status !== "OK" && status !== "ZERO_RESULTS") {
    // The protocol promises a short error_message with every failure.
    body.error_message = `Places API answered ${status}`;
  } else {
    // Not text (it goes into the `whatsat` event too, and an upstream chose its size).
    delete body.error_message;
  }
  return { body: redactDeep(body, secrets) };
}
