/**
 * The Google providers (New and legacy) and the load-control wrapper, against a real fake Google
 * HTTP server on 127.0.0.1: the exact requests Google would get, the translation to the legacy
 * shape, every failure mode, deadlines, coalescing, the concurrency cap, and that the API key
 * never appears in an answer.
 */

import assert from "node:assert/strict";
import { createGoogleNewProvider, NEW_API_FIELD_MASK } from "../servers/places/google_new.ts";
import { createGoogleLegacyProvider } from "../servers/places/google_legacy.ts";
import { withLoadControl } from "../servers/places/load_control.ts";
import { formatLegacyJson } from "../servers/places/legacy_json.ts";
import { createPlacesProvider, describeProvider } from "../servers/places/select.ts";
import type { PlacesAnswer, PlacesProvider, PlacesQuery } from "../servers/places/provider.ts";
import { FAKE_LEGACY_RESULTS, type FakeGoogle, startFakeGoogle } from "./_helpers/fake_google.ts";

const KEY = "AIzaTEST-key_0123456789abcdefghijklmnop";
const UCLA: PlacesQuery = { lat: 34.068930, lng: -118.445127, radiusKm: 10, bound: 5 };
const FAST = 200; // ms: every timeout in this file

/** Runs `fn` with a fresh fake, always closing it (the leak sanitizers check). */
async function withFake(fn: (fake: FakeGoogle) => Promise<void>): Promise<void> {
  const fake = startFakeGoogle(KEY);
  try {
    await fn(fake);
  } finally {
    await fake.close();
  }
}

/** Every answer goes through here: legacy shape, and no trace of the key anywhere. */
function checked(answer: PlacesAnswer): PlacesAnswer {
  const { body } = answer;
  assert.ok(Array.isArray(body.html_attributions));
  assert.ok(Array.isArray(body.results));
  assert.equal(typeof body.status, "string");
  if (body.status !== "OK") assert.deepEqual(body.results, []);
  // PLACES_API.md: OK means "at least one result"; an empty list is ZERO_RESULTS, every provider.
  else assert.ok(body.results.length > 0, "OK with no results");
  if (body.status !== "OK" && body.status !== "ZERO_RESULTS") {
    assert.equal(typeof body.error_message, "string");
    assert.ok(body.error_message!.length <= 200);
  }
  assert.ok(!JSON.stringify(answer).includes(KEY), "key in answer");
  const text = formatLegacyJson(body);
  assert.ok(!text.includes(KEY), "key in printed JSON");
  assert.ok(!text.includes("\n\n") && !text.endsWith("\n"));
  return answer;
}

function newProvider(fake: FakeGoogle, timeoutMs = FAST): PlacesProvider {
  return createGoogleNewProvider({ apiKey: KEY, baseUrl: fake.origin, timeoutMs });
}

function legacyProvider(fake: FakeGoogle, timeoutMs = FAST): PlacesProvider {
  return createGoogleLegacyProvider({ apiKey: KEY, baseUrl: fake.origin, timeoutMs });
}

/** A port nothing listens on (bound, then released). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

// ---------------------------------------------------------------------------------------------
// Places API (New)

Deno.test("new: sends exactly the request Google expects", async () => {
  await withFake(async (fake) => {
    checked(await newProvider(fake).search(UCLA));
    assert.equal(fake.requests.length, 1);
    const req = fake.requests[0];
    assert.equal(req.method, "POST");
    assert.equal(req.path, "/v1/places:searchNearby");
    assert.equal(req.rawQuery, "");
    assert.equal(req.headers["x-goog-api-key"], KEY);
    assert.equal(req.headers["x-goog-fieldmask"], NEW_API_FIELD_MASK);
    assert.equal(req.headers["content-type"], "application/json");
    assert.deepEqual(JSON.parse(req.body), {
      maxResultCount: 5,
      locationRestriction: {
        circle: { center: { latitude: 34.06893, longitude: -118.445127 }, radius: 10000 },
      },
      rankPreference: "POPULARITY",
    });
    // Only fields the legacy shape uses, never "*".
    assert.ok(!NEW_API_FIELD_MASK.includes("*"));
    for (const field of NEW_API_FIELD_MASK.split(",")) assert.match(field, /^places\.\w+/);
  });
});

Deno.test("new: radius in metres without float noise; bound 0 makes no request", async () => {
  await withFake(async (fake) => {
    const provider = newProvider(fake);
    checked(await provider.search({ ...UCLA, radiusKm: 1.1, bound: 20 }));
    const body = JSON.parse(fake.requests[0].body);
    assert.equal(body.locationRestriction.circle.radius, 1100);
    assert.equal(body.maxResultCount, 20);
    const zero = checked(await provider.search({ ...UCLA, bound: 0 }));
    assert.deepEqual(zero.body, { html_attributions: [], results: [], status: "ZERO_RESULTS" });
    assert.equal(fake.requests.length, 1);
  });
});

Deno.test("new: translates places into the legacy shape", async () => {
  await withFake(async (fake) => {
    const { body } = checked(await newProvider(fake).search({ ...UCLA, bound: 2 }));
    assert.equal(body.status, "OK");
    assert.deepEqual(body.html_attributions, []);
    assert.equal(body.results.length, 2);
    assert.ok(!("next_page_token" in body) && !("places" in body));
    assert.deepEqual(body.results[0], {
      business_status: "OPERATIONAL",
      geometry: { location: { lat: 34.068921, lng: -118.4451811 } },
      name: "University of California, Los Angeles",
      place_id: "ChIJ_PLACEHOLDER_UCLA_000",
      rating: 4.6,
      reference: "ChIJ_PLACEHOLDER_UCLA_000",
      types: ["university", "point_of_interest", "establishment"],
      user_ratings_total: 4821,
      vicinity: "Los Angeles",
    });
    assert.deepEqual(body.results[1], {
      business_status: "OPERATIONAL",
      geometry: {
        location: { lat: 34.0704937, lng: -118.4434471 },
        viewport: {
          northeast: { lat: 34.07184268029149, lng: -118.4420981197085 },
          southwest: { lat: 34.06914471970849, lng: -118.4447960802915 },
        },
      },
      icon_background_color: "#FF9E67",
      icon_mask_base_uri: "https://maps.gstatic.com/mapfiles/place_api/icons/v2/cafe_pinlet",
      name: "Example Campus Cafe",
      opening_hours: { open_now: true },
      photos: [{
        height: 2432,
        html_attributions: [
          '<a href="https://maps.google.com/maps/contrib/000000000000000000000">A Google User</a>',
        ],
        photo_reference: "places/ChIJ_PLACEHOLDER_CAFE_001/photos/PHOTO_REF_1",
        width: 3648,
      }],
      place_id: "ChIJ_PLACEHOLDER_CAFE_001",
      plus_code: { compound_code: "3H9V+H4 Los Angeles, CA, USA", global_code: "85633H9V+H4" },
      price_level: 1,
      rating: 4.2,
      reference: "ChIJ_PLACEHOLDER_CAFE_001",
      types: ["cafe", "food", "point_of_interest", "establishment"],
      user_ratings_total: 312,
      vicinity: "308 Westwood Plaza, Los Angeles",
    });
    // No shortFormattedAddress: formattedAddress is the fallback.
    const three = checked(await newProvider(fake).search({ ...UCLA, bound: 3 }));
    assert.equal(three.body.results[2].vicinity, "Los Angeles, CA, USA");
  });
});

Deno.test("new: {} is ZERO_RESULTS; HTTP errors map to legacy statuses", async () => {
  await withFake(async (fake) => {
    const provider = newProvider(fake);
    fake.mode = "empty";
    assert.deepEqual(checked(await provider.search(UCLA)).body, {
      html_attributions: [],
      results: [],
      status: "ZERO_RESULTS",
    });
    const cases = [
      ["http400", "INVALID_REQUEST", "Request contains an invalid argument."],
      ["http403", "REQUEST_DENIED", "Places API (New) has not been used."],
      ["http429", "OVER_QUERY_LIMIT", "Quota exceeded."],
      ["http500", "UNKNOWN_ERROR", "Internal error encountered."],
      ["notjson", "UNKNOWN_ERROR", "Places API (New) answer is not JSON"],
    ] as const;
    for (const [mode, status, message] of cases) {
      fake.mode = mode;
      const { body } = checked(await provider.search(UCLA));
      assert.deepEqual(body, {
        error_message: message,
        html_attributions: [],
        results: [],
        status,
      });
    }
  });
});

Deno.test("new: a wrong key is INVALID_REQUEST; a key echoed back by Google is redacted", async () => {
  await withFake(async (fake) => {
    const wrong = createGoogleNewProvider({ apiKey: "wrong-key", baseUrl: fake.origin });
    const { body } = checked(await wrong.search(UCLA));
    assert.equal(body.status, "INVALID_REQUEST");
    assert.equal(body.error_message, "API key not valid. Please pass a valid API key.");
    fake.mode = "echoKey";
    const echoed = checked(await newProvider(fake).search(UCLA));
    assert.equal(echoed.body.error_message, "API key not valid: REDACTED");
  });
});

Deno.test("new: a malformed photo, attribution or field costs only itself, never the answer (adversarial review)", async () => {
  await withFake(async (fake) => {
    const place = { id: "ChIJ_OK", displayName: { text: "Kept" } };
    fake.mode = "body";
    fake.body = {
      places: [
        { ...place, photos: [null, 7, "x", { name: "places/p/photos/1", widthPx: 10 }] },
        { ...place, photos: [{ authorAttributions: "not a list" }] },
        { ...place, photos: [{ authorAttributions: [null, 3, { uri: 5, displayName: {} }] }] },
        {
          ...place,
          photos: [{ authorAttributions: [{ uri: "https://a.test/?q=<&>", displayName: 9 }] }],
        },
        { ...place, priceLevel: "constructor", types: ["cafe", 3, null] },
      ],
    };
    const { body } = checked(await newProvider(fake).search({ ...UCLA, bound: 20 }));
    // Before: one bad photo threw in the translation, and the whole answer became
    // UNKNOWN_ERROR "Places provider failed".
    assert.equal(body.status, "OK");
    assert.equal(body.results.length, 5);
    for (const r of body.results) assert.equal(r.name, "Kept");
    assert.deepEqual(body.results[0].photos, [
      { html_attributions: [], photo_reference: "places/p/photos/1", width: 10 },
    ]);
    assert.deepEqual(body.results[1].photos, [{ html_attributions: [] }]);
    assert.deepEqual(body.results[2].photos, [{ html_attributions: [""] }]);
    assert.deepEqual(body.results[3].photos, [{
      html_attributions: ['<a href="https://a.test/?q=&lt;&amp;&gt;"></a>'],
    }]);
    // A price level naming an Object.prototype member is no price level.
    assert.ok(!Object.hasOwn(body.results[4], "price_level"));
    assert.deepEqual(body.results[4].types, ["cafe"]);
  });
});

// ---------------------------------------------------------------------------------------------
// Legacy Nearby Search

Deno.test("legacy: sends exactly the request Google expects", async () => {
  await withFake(async (fake) => {
    const provider = legacyProvider(fake);
    checked(await provider.search(UCLA));
    const req = fake.requests[0];
    assert.equal(req.method, "GET");
    assert.equal(req.path, "/maps/api/place/nearbysearch/json");
    assert.equal(req.rawQuery, `location=34.06893,-118.445127&radius=10000&key=${KEY}`);
    assert.ok(!req.rawQuery.includes("+"));
    assert.equal(req.body, "");
    // Tiny and negative coordinates: plain decimals, no exponent, no '+'.
    checked(await provider.search({ lat: 1e-7, lng: -0.5, radiusKm: 0.25, bound: 1 }));
    assert.equal(fake.requests[1].rawQuery, `location=0.0000001,-0.5&radius=250&key=${KEY}`);
    // A radius too small for a millimetre is still a radius: never `radius=0`, which Google
    // refuses (second adversarial review).
    checked(await provider.search({ lat: 1, lng: 1, radiusKm: 0.0000001, bound: 1 }));
    assert.equal(fake.requests[2].rawQuery, `location=1,1&radius=0.001&key=${KEY}`);
  });
});

Deno.test("legacy: passes Google's body through, results cut to the bound", async () => {
  await withFake(async (fake) => {
    const provider = legacyProvider(fake);
    const { body } = checked(await provider.search(UCLA));
    assert.equal(body.status, "OK");
    assert.equal(body.next_page_token, "AW30NDw-PLACEHOLDER-TOKEN-not-real");
    assert.deepEqual(body.results, FAKE_LEGACY_RESULTS.slice(0, 5));
    const zero = checked(await provider.search({ ...UCLA, bound: 0 }));
    assert.deepEqual(zero.body, { html_attributions: [], results: [], status: "ZERO_RESULTS" });
    assert.equal(fake.requests.length, 1);
    fake.mode = "empty";
    assert.equal(checked(await provider.search(UCLA)).body.status, "ZERO_RESULTS");
  });
});

Deno.test("legacy: Google's own error status is kept; HTTP and body failures mapped", async () => {
  await withFake(async (fake) => {
    const wrong = createGoogleLegacyProvider({ apiKey: "wrong-key", baseUrl: fake.origin });
    assert.deepEqual(checked(await wrong.search(UCLA)).body, {
      error_message: "The provided API key is invalid.",
      html_attributions: [],
      results: [],
      status: "REQUEST_DENIED",
    });
    const provider = legacyProvider(fake);
    const cases = [
      ["denied", "REQUEST_DENIED", "The provided API key is invalid."],
      ["http400", "INVALID_REQUEST", "Request contains an invalid argument."],
      ["http403", "REQUEST_DENIED", "Places API (New) has not been used."],
      ["http429", "OVER_QUERY_LIMIT", "Quota exceeded."],
      ["http500", "UNKNOWN_ERROR", "Internal error encountered."],
      ["notjson", "UNKNOWN_ERROR", "Places API answer is not JSON"],
      ["echoKey", "INVALID_REQUEST", "API key not valid: REDACTED"],
    ] as const;
    for (const [mode, status, message] of cases) {
      fake.mode = mode;
      const { body } = checked(await provider.search(UCLA));
      assert.deepEqual(body, {
        error_message: message,
        html_attributions: [],
        results: [],
        status,
      });
    }
  });
});

Deno.test("legacy: a status that is no Google status word is UNKNOWN_ERROR, not passed on (adversarial review)", async () => {
  await withFake(async (fake) => {
    const provider = legacyProvider(fake);
    fake.mode = "body";
    // A hostile upstream chose the status: 100 KB of it went into the reply, every event of the
    // dashboard's feed (10,000 kept) and a new metrics series per distinct value.
    for (const status of ["Z".repeat(100_000), "ok", "NOT OK", "OK\n", "", "X".repeat(33)]) {
      fake.body = { html_attributions: [], results: FAKE_LEGACY_RESULTS, status };
      const { body } = checked(await provider.search(UCLA));
      assert.equal(body.status, "UNKNOWN_ERROR", JSON.stringify(status.slice(0, 20)));
      assert.deepEqual(body.results, []);
    }
    // An error_message is text: anything else (100 KB of it went into the feed's events too)
    // is replaced, or dropped when there is no failure to explain.
    const junk = { deep: ["y".repeat(100_000)] };
    fake.body = {
      html_attributions: [],
      results: [],
      status: "REQUEST_DENIED",
      error_message: junk,
    };
    assert.equal(
      checked(await provider.search(UCLA)).body.error_message,
      "Places API answered REQUEST_DENIED",
    );
    fake.body = {
      html_attributions: [],
      results: FAKE_LEGACY_RESULTS,
      status: "OK",
      error_message: junk,
    };
    const ok = checked(await provider.search(UCLA)).body;
    assert.equal(ok.results.length, UCLA.bound);
    assert.ok(!("error_message" in ok));
    // Google's own words are kept, OK or not (NOT_FOUND is one legacy documents).
    fake.body = { html_attributions: [], results: [], status: "NOT_FOUND" };
    assert.equal(checked(await provider.search(UCLA)).body.status, "NOT_FOUND");
    fake.body = { html_attributions: [], results: FAKE_LEGACY_RESULTS, status: "OK" };
    assert.equal(checked(await provider.search(UCLA)).body.results.length, UCLA.bound);
  });
});

Deno.test("legacy: OK with no results is ZERO_RESULTS, as the New and offline providers answer (adversarial review)", async () => {
  await withFake(async (fake) => {
    const provider = legacyProvider(fake);
    fake.mode = "body";
    // PLACES_API.md: OK is "no errors; at least one result". An upstream's OK with an empty or
    // missing list was passed on as OK, where the New provider says ZERO_RESULTS for the same.
    for (const results of [[], undefined]) {
      fake.body = { html_attributions: [], results, status: "OK", next_page_token: "T" };
      const { body } = checked(await provider.search(UCLA));
      assert.deepEqual(body, { html_attributions: [], results: [], status: "ZERO_RESULTS" });
    }
    fake.body = { html_attributions: [], results: FAKE_LEGACY_RESULTS, status: "ZERO_RESULTS" };
    assert.deepEqual(checked(await provider.search(UCLA)).body.results, []);
  });
});

// ---------------------------------------------------------------------------------------------
// Failures shared by both providers

const PROVIDERS = [
  ["new", newProvider],
  ["legacy", legacyProvider],
] as const;

for (const [name, make] of PROVIDERS) {
  Deno.test(`${name}: an upstream that never answers times out (headers or body)`, async () => {
    await withFake(async (fake) => {
      for (const mode of ["hang", "hangBody"] as const) {
        fake.mode = mode;
        const start = performance.now();
        const { body } = checked(await make(fake).search(UCLA));
        const elapsed = performance.now() - start;
        assert.equal(body.status, "UNKNOWN_ERROR");
        assert.equal(body.error_message, `Places request timed out after ${FAST} ms`);
        assert.ok(elapsed >= FAST - 5 && elapsed < FAST + 1000, `took ${elapsed} ms`);
      }
    });
  });

  Deno.test(`${name}: refused connection and unresolvable host`, async () => {
    const port = closedPort();
    const refused = name === "new"
      ? createGoogleNewProvider({ apiKey: KEY, baseUrl: `http://127.0.0.1:${port}` })
      : createGoogleLegacyProvider({ apiKey: KEY, baseUrl: `http://127.0.0.1:${port}` });
    const a = checked(await refused.search(UCLA)).body;
    assert.equal(a.status, "UNKNOWN_ERROR");
    assert.equal(a.error_message, `Cannot reach 127.0.0.1:${port}: connection refused`);

    const opts = { apiKey: KEY, baseUrl: "http://nonexistent.invalid", timeoutMs: 3000 };
    const nowhere = name === "new"
      ? createGoogleNewProvider(opts)
      : createGoogleLegacyProvider(opts);
    const b = checked(await nowhere.search(UCLA)).body;
    assert.equal(b.status, "UNKNOWN_ERROR");
    // A resolver that stalls instead of failing ends in the deadline; both are fine answers.
    assert.match(b.error_message!, /^Cannot reach nonexistent\.invalid: host not found$|timed out/);
  });
}

// ---------------------------------------------------------------------------------------------
// Load control

Deno.test("load control: identical concurrent queries share one upstream request", async () => {
  await withFake(async (fake) => {
    fake.delayMs = 50;
    const provider = withLoadControl(newProvider(fake, 2000), { timeoutMs: 2000 });
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => provider.search(UCLA)),
    );
    answers.forEach(checked);
    assert.equal(fake.requests.length, 1);
    assert.equal(answers.filter((a) => a.coalesced).length, 9);
    assert.equal(answers.filter((a) => !a.coalesced).length, 1);
    for (const a of answers) {
      assert.deepEqual(a.body, answers[0].body);
      assert.equal(typeof a.latencyMs, "number");
    }
    assert.equal(provider.stats().coalesced, 9);
    // A different bound is a different query.
    await provider.search({ ...UCLA, bound: 4 });
    assert.equal(fake.requests.length, 2);
    provider.close!();
  });
});

Deno.test("load control: at most N upstream requests in flight, the rest queued", async () => {
  await withFake(async (fake) => {
    fake.delayMs = 40;
    const provider = withLoadControl(legacyProvider(fake, 5000), {
      concurrency: 4,
      timeoutMs: 5000,
    });
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, i) => provider.search({ ...UCLA, lat: 34 + i / 100 })),
    );
    for (const a of answers) assert.equal(checked(a).body.status, "OK");
    assert.equal(fake.requests.length, 30);
    assert.equal(fake.maxInFlight, 4);
    const stats = provider.stats();
    assert.equal(stats.peakActive, 4);
    assert.equal(stats.upstreamRequests, 30);
    assert.equal(stats.active, 0);
    assert.equal(stats.queued, 0);
    provider.close!();
  });
});

Deno.test("load control: a query that times out in the queue is never sent", async () => {
  await withFake(async (fake) => {
    fake.mode = "hang";
    const provider = withLoadControl(newProvider(fake, 5000), { concurrency: 1, timeoutMs: FAST });
    const start = performance.now();
    const [running, queued] = await Promise.all([
      provider.search(UCLA),
      provider.search({ ...UCLA, lat: 35 }),
    ]);
    const elapsed = performance.now() - start;
    assert.ok(elapsed < FAST + 1000, `took ${elapsed} ms`);
    assert.equal(checked(running).body.error_message, `Places request timed out after ${FAST} ms`);
    assert.equal(
      checked(queued).body.error_message,
      `Places request timed out after ${FAST} ms waiting for a free upstream slot`,
    );
    // Give the freed slot a chance to (wrongly) send the expired query.
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(fake.requests.length, 1);
    assert.equal(provider.stats().timeouts, 2);
    provider.close!();
  });
});

Deno.test("load control: a full queue answers OVER_QUERY_LIMIT at once; close answers all", async () => {
  await withFake(async (fake) => {
    fake.mode = "hang";
    const provider = withLoadControl(newProvider(fake, 5000), {
      concurrency: 1,
      maxQueue: 2,
      timeoutMs: 5000,
    });
    const waiting = [0, 1, 2].map((i) => provider.search({ ...UCLA, lat: 30 + i }));
    const refused = checked(await provider.search({ ...UCLA, lat: 40 }));
    assert.equal(refused.body.status, "OVER_QUERY_LIMIT");
    assert.equal(provider.stats().rejected, 1);
    assert.equal(provider.stats().queued, 2);
    provider.close!();
    for (const a of await Promise.all(waiting)) {
      assert.equal(checked(a).body.error_message, "Places provider is closed");
    }
    const after = checked(await provider.search(UCLA));
    assert.equal(after.body.error_message, "Places provider is closed");
  });
});

Deno.test("load control: optional cache with TTL; failures are not cached", async () => {
  await withFake(async (fake) => {
    let clock = 0;
    const provider = withLoadControl(newProvider(fake), {
      timeoutMs: 2000,
      cacheTtlSeconds: 10,
      now: () => clock,
    });
    const first = checked(await provider.search(UCLA));
    const second = checked(await provider.search(UCLA));
    assert.equal(fake.requests.length, 1);
    assert.equal(first.cached, false);
    assert.equal(second.cached, true);
    assert.equal(second.coalesced, true);
    assert.deepEqual(second.body, first.body);
    clock += 10_001;
    checked(await provider.search(UCLA));
    assert.equal(fake.requests.length, 2);

    fake.mode = "http500";
    const q = { ...UCLA, lat: 1 };
    checked(await provider.search(q));
    checked(await provider.search(q));
    assert.equal(fake.requests.length, 4);
    provider.close!();
  });
});

Deno.test("load control: the cache is bounded in bytes, not only in entries (adversarial review)", async () => {
  await withFake(async (fake) => {
    // Answers of ~0.9 MiB each (20 results with long names, under the 1 MiB body cap): 10,000
    // cached entries of them were ~9 GB. Past the cache's byte budget (64 MiB) the oldest go.
    fake.mode = "body";
    fake.body = {
      html_attributions: [],
      results: Array.from({ length: 20 }, (_, i) => ({ name: `${i}`.padEnd(46_000, "x") })),
      status: "OK",
    };
    const provider = withLoadControl(legacyProvider(fake, 5000), {
      timeoutMs: 5000,
      cacheTtlSeconds: 3600,
    });
    try {
      const first = { ...UCLA, bound: 20 };
      assert.equal((await provider.search(first)).body.results.length, 20);
      assert.equal((await provider.search(first)).cached, true);
      for (let i = 1; i <= 80; i++) {
        assert.equal((await provider.search({ ...first, lat: i / 100 })).body.status, "OK");
      }
      const before = fake.requests.length;
      const again = await provider.search(first);
      assert.equal(again.cached, false, "80 answers of 0.9 MiB all kept in the cache");
      assert.equal(fake.requests.length, before + 1);
      // The newest are still cached: the bound evicts the oldest, it does not turn the cache off.
      assert.equal((await provider.search({ ...first, lat: 0.8 })).cached, true);
    } finally {
      provider.close!();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Selection

Deno.test("select: defaults, key requirements, descriptions without the key", async () => {
  assert.equal(createPlacesProvider({}).name, "offline");
  assert.equal(createPlacesProvider({ apiKey: "  " }).name, "offline");
  const defaultNew = createPlacesProvider({ apiKey: KEY });
  assert.equal(defaultNew.name, "new");
  defaultNew.close?.();
  assert.throws(() => createPlacesProvider({ places: "new" }), /needs a Google API key/);
  assert.throws(() => createPlacesProvider({ places: "legacy" }), /GOOGLE_PLACES_API_KEY/);
  assert.throws(
    () => createPlacesProvider({ apiKey: KEY, baseUrl: "not a url" }),
    (err: Error) => !err.message.includes(KEY),
  );
  assert.throws(() => createPlacesProvider({ apiKey: KEY, concurrency: 0 }), /concurrency/);
  assert.equal(describeProvider({}), "offline (GeoNames cities, CC BY 4.0)");
  for (const places of ["new", "legacy"] as const) {
    const text = describeProvider({ places, apiKey: KEY, cacheTtlSeconds: 30 });
    assert.ok(!text.includes(KEY));
    assert.match(text, new RegExp(`^${places} \\(`));
  }
  assert.equal(
    describeProvider({ apiKey: KEY }),
    "new (Places API (New) at https://places.googleapis.com; timeout 5000 ms, 16 in flight, " +
      "cache off)",
  );

  await withFake(async (fake) => {
    for (const places of ["new", "legacy"] as const) {
      const provider = createPlacesProvider({ places, apiKey: KEY, baseUrl: fake.origin });
      assert.equal(provider.name, places);
      const answer = checked(await provider.search(UCLA));
      assert.equal(answer.body.status, "OK");
      assert.equal(answer.body.results.length, places === "new" ? 3 : 5);
      assert.equal(answer.coalesced, false);
      provider.close?.();
    }
  });
});
