/**
 * A fake Google Places server for tests: a real HTTP server on 127.0.0.1 (port chosen by the OS)
 * that speaks both Nearby Search APIs, records every request as Google would receive it, and can
 * be switched into each failure mode the providers must survive.
 *
 * @module
 */

/** How the fake answers. */
export type FakeMode =
  /** Normal answers (invalid key → Google's key error for either API). */
  | "ok"
  /** No places: `{}` (New) / `ZERO_RESULTS` (legacy). */
  | "empty"
  /** HTTP 400 / 403 / 429 / 500 with a Google-style error body. */
  | "http400"
  | "http403"
  | "http429"
  | "http500"
  /** HTTP 200 with an HTML body. */
  | "notjson"
  /** Never sends the response headers (until the client goes away or the fake closes). */
  | "hang"
  /** Sends headers and part of the body, then stalls. */
  | "hangBody"
  /** Legacy `REQUEST_DENIED` body with HTTP 200 (New: HTTP 403). */
  | "denied"
  /** HTTP 400 whose error message quotes the API key back, to test redaction. */
  | "echoKey"
  /** `redirectStatus` (a 3xx) with `Location: redirectTo`. */
  | "redirect"
  /** HTTP 200 with `body` as JSON, whatever the API (hostile or malformed answers). */
  | "body";

/** One request as the fake received it. */
export interface RecordedRequest {
  method: string;
  path: string;
  /** The raw query string without `?` (exactly as sent). */
  rawQuery: string;
  query: Record<string, string>;
  /** Header names lower-cased. */
  headers: Record<string, string>;
  body: string;
}

/** A running fake (`await using` closes it). */
export interface FakeGoogle extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`: pass as `baseUrl`. */
  origin: string;
  /** Current mode (change between requests). */
  mode: FakeMode;
  /** Delay before answering, ms (for concurrency tests). */
  delayMs: number;
  /** For mode "redirect": the status (default 307) and the Location (a URL). */
  redirectStatus: number;
  redirectTo: string;
  /** For mode "body": the JSON value answered. */
  body: unknown;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** Requests being handled now, and the most seen at once. */
  inFlight: number;
  maxInFlight: number;
  /** Stops the server, releasing any hanging responses first. */
  close(): Promise<void>;
}

/** Places the fake returns in New API form (the Places spec's sample plus a fully-featured one). */
export const FAKE_NEW_PLACES = [
  {
    id: "ChIJ_PLACEHOLDER_UCLA_000",
    types: ["university", "point_of_interest", "establishment"],
    formattedAddress: "Los Angeles, CA 90095, USA",
    location: { latitude: 34.068921, longitude: -118.4451811 },
    rating: 4.6,
    businessStatus: "OPERATIONAL",
    userRatingCount: 4821,
    displayName: { text: "University of California, Los Angeles", languageCode: "en" },
    shortFormattedAddress: "Los Angeles",
  },
  {
    id: "ChIJ_PLACEHOLDER_CAFE_001",
    types: ["cafe", "food", "point_of_interest", "establishment"],
    formattedAddress: "308 Westwood Plaza, Los Angeles, CA 90095, USA",
    location: { latitude: 34.0704937, longitude: -118.4434471 },
    viewport: {
      low: { latitude: 34.06914471970849, longitude: -118.4447960802915 },
      high: { latitude: 34.07184268029149, longitude: -118.4420981197085 },
    },
    rating: 4.2,
    businessStatus: "OPERATIONAL",
    userRatingCount: 312,
    displayName: { text: "Example Campus Cafe", languageCode: "en" },
    shortFormattedAddress: "308 Westwood Plaza, Los Angeles",
    priceLevel: "PRICE_LEVEL_INEXPENSIVE",
    currentOpeningHours: { openNow: true },
    iconBackgroundColor: "#FF9E67",
    iconMaskBaseUri: "https://maps.gstatic.com/mapfiles/place_api/icons/v2/cafe_pinlet",
    plusCode: { globalCode: "85633H9V+H4", compoundCode: "3H9V+H4 Los Angeles, CA, USA" },
    photos: [{
      name: "places/ChIJ_PLACEHOLDER_CAFE_001/photos/PHOTO_REF_1",
      widthPx: 3648,
      heightPx: 2432,
      authorAttributions: [{
        displayName: "A Google User",
        uri: "https://maps.google.com/maps/contrib/000000000000000000000",
        photoUri: "https://lh3.googleusercontent.com/a/placeholder",
      }],
    }],
  },
  {
    id: "ChIJ_PLACEHOLDER_PARK_002",
    formattedAddress: "Los Angeles, CA, USA",
    location: { latitude: 34.07, longitude: -118.44 },
    displayName: { text: "Example Park" },
    types: ["park"],
  },
];

/** Legacy results the fake returns (25, so cutting to the bound is visible). */
export const FAKE_LEGACY_RESULTS = Array.from({ length: 25 }, (_, i) => ({
  business_status: "OPERATIONAL",
  geometry: { location: { lat: 34.06 + i / 1000, lng: -118.44 } },
  name: `Legacy Place ${i}`,
  place_id: `ChIJ_LEGACY_${i}`,
  reference: `ChIJ_LEGACY_${i}`,
  scope: "GOOGLE",
  types: ["point_of_interest", "establishment"],
  vicinity: "Los Angeles",
}));

const NEW_PATH = "/v1/places:searchNearby";
const LEGACY_PATH = "/maps/api/place/nearbysearch/json";

/**
 * Starts a fake accepting `apiKey` as the only valid key.
 *
 * @example
 * ```ts
 * import { createGoogleNewProvider } from "../../servers/places/google_new.ts";
 *
 * const fake = startFakeGoogle("TEST-KEY");
 * try {
 *   const provider = createGoogleNewProvider({ apiKey: "TEST-KEY", baseUrl: fake.origin });
 *   await provider.search({ lat: 34, lng: -118, radiusKm: 1, bound: 1 });
 *   console.log(fake.requests[0].headers["x-goog-fieldmask"]);
 * } finally {
 *   await fake.close();
 * }
 * ```
 */
export function startFakeGoogle(apiKey: string): FakeGoogle {
  // Resolvers of responses left hanging, released on close so the server can shut down.
  const hanging = new Set<() => void>();

  const fake: FakeGoogle = {
    origin: "",
    mode: "ok",
    delayMs: 0,
    redirectStatus: 307,
    redirectTo: "",
    body: {},
    requests: [],
    inFlight: 0,
    maxInFlight: 0,
    close: async () => {},
    [Symbol.asyncDispose]: () => fake.close(),
  };

  async function handler(req: Request): Promise<Response> {
    fake.inFlight++;
    fake.maxInFlight = Math.max(fake.maxInFlight, fake.inFlight);
    try {
      const url = new URL(req.url);
      const rawQuery = url.search.slice(1);
      const headers: Record<string, string> = {};
      req.headers.forEach((v, k) => (headers[k] = v));
      fake.requests.push({
        method: req.method,
        path: url.pathname,
        rawQuery,
        query: Object.fromEntries(url.searchParams),
        headers,
        body: await req.text(),
      });
      if (fake.delayMs > 0) await new Promise((r) => setTimeout(r, fake.delayMs));
      const isNew = url.pathname === NEW_PATH && req.method === "POST";
      const isLegacy = url.pathname === LEGACY_PATH && req.method === "GET";
      if (!isNew && !isLegacy) return json(404, { error: { code: 404, message: "Not Found" } });
      return await answer(isNew, url, headers);
    } finally {
      fake.inFlight--;
    }
  }

  async function answer(
    isNew: boolean,
    url: URL,
    headers: Record<string, string>,
  ): Promise<Response> {
    switch (fake.mode) {
      case "hang":
        await waitForRelease(new AbortController().signal);
        return new Response("too late", { status: 504 });
      case "hangBody":
        return new Response(stallingBody(), {
          headers: { "content-type": "application/json" },
        });
      case "notjson":
        return new Response("<html><body>Service Unavailable</body></html>", {
          headers: { "content-type": "text/html" },
        });
      case "http400":
        return googleError(400, "INVALID_ARGUMENT", "Request contains an invalid argument.");
      case "http403":
        return googleError(403, "PERMISSION_DENIED", "Places API (New) has not been used.");
      case "http429":
        return googleError(429, "RESOURCE_EXHAUSTED", "Quota exceeded.");
      case "http500":
        return googleError(500, "INTERNAL", "Internal error encountered.");
      case "echoKey":
        return googleError(400, "INVALID_ARGUMENT", `API key not valid: ${apiKey}`);
      case "redirect":
        return new Response(null, {
          status: fake.redirectStatus,
          headers: { location: fake.redirectTo + url.pathname + url.search },
        });
      case "denied":
        return isNew
          ? googleError(403, "PERMISSION_DENIED", "The provided API key is invalid.")
          : legacyDenied();
      case "empty":
        return isNew ? json(200, {}) : json(200, {
          html_attributions: [],
          results: [],
          status: "ZERO_RESULTS",
        });
      case "body":
        return json(200, fake.body);
      case "ok":
        break;
    }
    if (isNew) {
      if (headers["x-goog-api-key"] !== apiKey) {
        return googleError(
          400,
          "INVALID_ARGUMENT",
          "API key not valid. Please pass a valid API key.",
        );
      }
      if (!headers["x-goog-fieldmask"]) {
        return googleError(400, "INVALID_ARGUMENT", "FieldMask is a required parameter.");
      }
      const body = JSON.parse(fake.requests.at(-1)!.body) as { maxResultCount?: number };
      return json(200, { places: FAKE_NEW_PLACES.slice(0, body.maxResultCount ?? 20) });
    }
    if (url.searchParams.get("key") !== apiKey) return legacyDenied();
    return json(200, {
      html_attributions: [],
      next_page_token: "AW30NDw-PLACEHOLDER-TOKEN-not-real",
      results: FAKE_LEGACY_RESULTS.slice(0, 20),
      status: "OK",
    });
  }

  /**
   * Resolves when `signal` aborts or the fake closes. (Deno.serve's request.signal is not used:
   * it also fires after successful responses, and warns about it.)
   */
  function waitForRelease(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        hanging.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      hanging.add(done);
      if (signal.aborted) done();
      else signal.addEventListener("abort", done, { once: true });
    });
  }

  function stallingBody(): ReadableStream<Uint8Array> {
    // Cancelling the stream (client gone) ends the wait early.
    const cancelled = new AbortController();
    return new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"places": ['));
      },
      async pull(controller) {
        await waitForRelease(cancelled.signal);
        try {
          controller.close();
        } catch {
          // Already cancelled by the client.
        }
      },
      cancel() {
        cancelled.abort();
      },
    });
  }

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  fake.origin = `http://127.0.0.1:${server.addr.port}`;
  fake.close = async () => {
    for (const release of [...hanging]) release();
    await server.shutdown();
  };
  return fake;
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=UTF-8" },
  });
}

function googleError(code: number, status: string, message: string): Response {
  return json(code, { error: { code, message, status } });
}

function legacyDenied(): Response {
  return json(200, {
    error_message: "The provided API key is invalid.",
    html_attributions: [],
    results: [],
    status: "REQUEST_DENIED",
  });
}
