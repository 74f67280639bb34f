/**
 * Google Places API (New) provider: `POST /v1/places:searchNearby`, translated into the legacy
 * Nearby Search shape WHATSAT prints (docs/places.md, "How the New response is translated").
 *
 * The New API has no `status`: it is synthesized (`OK` / `ZERO_RESULTS` from the places list,
 * HTTP errors mapped to the legacy error statuses). Failures of any kind come back as a legacy
 * error body; `search` never rejects, and the API key never appears in an answer.
 *
 * @module
 */

import { checkQuery, emptyAnswer, errorAnswer, radiusMetres, redactDeep } from "./bodies.ts";
import type {
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

/** Google's origin for the New API. */
export const NEW_API_ORIGIN = "https://places.googleapis.com";

/**
 * The field mask: exactly the Place fields the legacy shape is built from, nothing more (the mask
 * decides the billing SKU, and `*` is discouraged).
 */
export const NEW_API_FIELD_MASK: string = [
  "places.id",
  "places.displayName",
  "places.location",
  "places.viewport",
  "places.shortFormattedAddress",
  "places.formattedAddress",
  "places.types",
  "places.rating",
  "places.userRatingCount",
  "places.businessStatus",
  "places.priceLevel",
  "places.currentOpeningHours.openNow",
  "places.iconBackgroundColor",
  "places.iconMaskBaseUri",
  "places.plusCode",
  "places.photos",
].join(",");

/** Options for {@linkcode createGoogleNewProvider}. */
export interface GoogleNewOptions {
  /** The Google API key (sent in `X-Goog-Api-Key`, never in the URL). */
  apiKey: string;
  /** Replaces `https://places.googleapis.com` (tests point this at a fake server). */
  baseUrl?: string;
  /** Deadline for one upstream exchange, ms (default 5000). */
  timeoutMs?: number;
  /** Optional `languageCode` (e.g. "en"); unset lets Google pick, as the legacy request does. */
  languageCode?: string;
}

/** A Place as the New API returns it (only the masked fields; all optional). */
export interface NewApiPlace {
  id?: string;
  displayName?: { text?: string };
  location?: { latitude?: number; longitude?: number };
  viewport?: { low?: LatLng; high?: LatLng };
  shortFormattedAddress?: string;
  formattedAddress?: string;
  types?: unknown;
  rating?: number;
  userRatingCount?: number;
  businessStatus?: string;
  priceLevel?: string;
  currentOpeningHours?: { openNow?: boolean };
  iconBackgroundColor?: string;
  iconMaskBaseUri?: string;
  plusCode?: { globalCode?: string; compoundCode?: string };
  photos?: NewApiPhoto[];
}

/** The New API's LatLng message. */
export interface LatLng {
  latitude?: number;
  longitude?: number;
}

/** A photo as the New API describes it. */
export interface NewApiPhoto {
  name?: string;
  widthPx?: number;
  heightPx?: number;
  authorAttributions?: { displayName?: string; uri?: string }[];
}

/** The New API's price enum, as the legacy 0–4 scale. */
const PRICE_LEVELS: Record<string, number> = {
  PRICE_LEVEL_FREE: 0,
  PRICE_LEVEL_INEXPENSIVE: 1,
  PRICE_LEVEL_MODERATE: 2,
  PRICE_LEVEL_EXPENSIVE: 3,
  PRICE_LEVEL_VERY_EXPENSIVE: 4,
};

/**
 * The JSON body for a query. Exported so tests can assert the exact request.
 *
 * `rankPreference: "POPULARITY"` is Google's default, sent anyway so the ranking (prominence, as
 * legacy) does not depend on a default that could change.
 *
 * @example
 * ```ts
 * newApiRequestBody({ lat: 34.06893, lng: -118.445127, radiusKm: 10, bound: 5 });
 * // { maxResultCount: 5, rankPreference: "POPULARITY",
 * //   locationRestriction: { circle: { center: { latitude: 34.06893, longitude: -118.445127 },
 * //   radius: 10000 } } }
 * ```
 */
export function newApiRequestBody(query: PlacesQuery, languageCode?: string): object {
  return {
    // The API accepts 1–20; bound 0 never gets here.
    maxResultCount: Math.min(Math.max(query.bound, 1), 20),
    locationRestriction: {
      circle: {
        center: { latitude: query.lat, longitude: query.lng },
        radius: radiusMetres(query.radiusKm),
      },
    },
    rankPreference: "POPULARITY",
    ...(languageCode ? { languageCode } : {}),
  };
}

/**
 * Creates the Places API (New) provider.
 *
 * Bound 0 answers `ZERO_RESULTS` without calling Google (the API cannot ask for 0 results, and
 * the offline provider answers the same way).
 *
 * @example
 * ```ts
 * const provider = createGoogleNewProvider({ apiKey: Deno.env.get("GOOGLE_PLACES_API_KEY")! });
 * const { body } = await provider.search({ lat: 34.06893, lng: -118.445127, radiusKm: 10, bound: 5 });
 * ```
 */
export function createGoogleNewProvider(opts: GoogleNewOptions): PlacesProvider {
  const origin = (opts.baseUrl ?? NEW_API_ORIGIN).replace(/\/+$/, "");
  const url = `${origin}/v1/places:searchNearby`;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const secrets = [opts.apiKey];

  return {
    name: "new",
    async search(query: PlacesQuery, options?: SearchOptions): Promise<PlacesAnswer> {
      const invalid = checkQuery(query);
      if (invalid) return invalid;
      if (query.bound === 0) return emptyAnswer();
      const out = await fetchUpstream(url, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          "X-Goog-Api-Key": opts.apiKey,
          "X-Goog-FieldMask": NEW_API_FIELD_MASK,
        },
        body: JSON.stringify(newApiRequestBody(query, opts.languageCode)),
      }, { timeoutMs, signal: options?.signal, secrets });
      return translateNewResponse(out, query.bound, secrets);
    },
  };
}

/**
 * Turns the New API's answer (or failure) into a legacy-shaped answer.
 *
 * @example
 * ```ts
 * translateNewResponse({ kind: "response", httpStatus: 200, json: {}, parsed: true }, 5, []);
 * // { body: { html_attributions: [], results: [], status: "ZERO_RESULTS" } }
 * ```
 */
export function translateNewResponse(
  out: UpstreamOutcome,
  bound: number,
  secrets: readonly string[],
): PlacesAnswer {
  if (out.kind === "failure") {
    const answer = errorAnswer("UNKNOWN_ERROR", out.message, secrets);
    return out.reason === "rejected" ? { ...answer, rejected: answer.body.error_message } : answer;
  }
  if (out.httpStatus < 200 || out.httpStatus > 299) {
    const google = out.parsed ? googleErrorMessage(out.json, secrets) : undefined;
    const message = google ?? `Places API (New) answered HTTP ${out.httpStatus}`;
    return errorAnswer(statusForHttp(out.httpStatus), message, secrets);
  }
  if (!out.parsed) return errorAnswer("UNKNOWN_ERROR", "Places API (New) answer is not JSON");
  const json = out.json;
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    return errorAnswer("UNKNOWN_ERROR", "Places API (New) answer is not a JSON object");
  }
  const places = (json as { places?: unknown }).places;
  if (places === undefined) return emptyAnswer();
  if (!Array.isArray(places)) {
    return errorAnswer("UNKNOWN_ERROR", "Places API (New) answer has a malformed places list");
  }
  const results = places
    .filter((p): p is NewApiPlace => p !== null && typeof p === "object")
    .slice(0, bound)
    .map(toLegacyPlace);
  if (results.length === 0) return emptyAnswer();
  // Belt and braces: nothing Google sends should hold the key, but nothing we print may.
  return { body: { html_attributions: [], results: redactDeep(results, secrets), status: "OK" } };
}

/**
 * One New-API Place as a legacy result (docs/places.md, "How the New response is translated"). Fields Google did not send
 * are left out rather than invented; `icon` and `scope` have no New equivalent.
 *
 * @example
 * ```ts
 * toLegacyPlace({ id: "ChIJ1", displayName: { text: "Cafe" }, priceLevel: "PRICE_LEVEL_MODERATE" });
 * // { name: "Cafe", place_id: "ChIJ1", price_level: 2, reference: "ChIJ1" }
 * ```
 */
export function toLegacyPlace(p: NewApiPlace): LegacyPlace {
  const out: LegacyPlace = {};
  if (typeof p.id === "string") {
    out.place_id = p.id;
    out.reference = p.id;
  }
  if (typeof p.displayName?.text === "string") out.name = p.displayName.text;
  const location = latLng(p.location);
  if (location) {
    out.geometry = { location };
    const northeast = latLng(p.viewport?.high);
    const southwest = latLng(p.viewport?.low);
    if (northeast && southwest) out.geometry.viewport = { northeast, southwest };
  }
  const vicinity = p.shortFormattedAddress ?? p.formattedAddress;
  if (typeof vicinity === "string") out.vicinity = vicinity;
  if (Array.isArray(p.types)) out.types = p.types.filter((t) => typeof t === "string");
  if (typeof p.rating === "number") out.rating = p.rating;
  if (typeof p.userRatingCount === "number") out.user_ratings_total = p.userRatingCount;
  if (typeof p.businessStatus === "string") out.business_status = p.businessStatus;
  if (typeof p.priceLevel === "string" && Object.hasOwn(PRICE_LEVELS, p.priceLevel)) {
    out.price_level = PRICE_LEVELS[p.priceLevel];
  }
  if (typeof p.currentOpeningHours?.openNow === "boolean") {
    out.opening_hours = { open_now: p.currentOpeningHours.openNow };
  }
  if (typeof p.iconBackgroundColor === "string") {
    out.icon_background_color = p.iconBackgroundColor;
  }
  if (typeof p.iconMaskBaseUri === "string") out.icon_mask_base_uri = p.iconMaskBaseUri;
  const plus = plusCode(p.plusCode);
  if (plus) out.plus_code = plus;
  // Only `p` itself is known to be an object: a malformed photo (or attribution) is skipped,
  // it must not throw away the whole answer.
  const photos = Array.isArray(p.photos) ? p.photos.filter(isObject).map(toLegacyPhoto) : [];
  if (photos.length > 0) out.photos = photos;
  return out;
}

function isObject<T>(v: T): v is T & object {
  return v !== null && typeof v === "object";
}

function latLng(v: LatLng | undefined): { lat: number; lng: number } | undefined {
  return typeof v?.latitude === "number" && typeof v.longitude === "number"
    ? { lat: v.latitude, lng: v.longitude }
    : undefined;
}

function plusCode(v: NewApiPlace["plusCode"]): Record<string, string> | undefined {
  if (!v) return undefined;
  const out: Record<string, string> = {};
  if (typeof v.compoundCode === "string") out.compound_code = v.compoundCode;
  if (typeof v.globalCode === "string") out.global_code = v.globalCode;
  return Object.keys(out).length ? out : undefined;
}

/**
 * A New photo as a legacy one. `photo_reference` is the New resource name
 * (`places/<id>/photos/<ref>`): that is what the New Place Photos endpoint takes, and there is no
 * way back to a legacy token. Author attributions become Google-style `<a href>` strings.
 */
function toLegacyPhoto(photo: NewApiPhoto): Record<string, unknown> {
  const authors = Array.isArray(photo.authorAttributions) ? photo.authorAttributions : [];
  const out: Record<string, unknown> = {
    html_attributions: authors.filter(isObject).map((a) => {
      const name = typeof a.displayName === "string" ? escapeHtml(a.displayName) : "";
      return typeof a.uri === "string" && a.uri
        ? `<a href="${escapeHtml(a.uri)}">${name}</a>`
        : name;
    }),
  };
  if (typeof photo.heightPx === "number") out.height = photo.heightPx;
  if (typeof photo.widthPx === "number") out.width = photo.widthPx;
  if (typeof photo.name === "string") out.photo_reference = photo.name;
  return out;
}

const HTML_ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
};

function escapeHtml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => HTML_ENTITIES[c]);
}
