/**
 * Small helpers every provider shares: building legacy-shaped answers (empty, error) and keeping
 * secrets out of them. Kept apart so offline, Google and the load-control wrapper agree on the
 * exact shape of "nothing" and "failure".
 *
 * @module
 */

import type { LegacyNearbyResponse, PlacesAnswer, PlacesQuery } from "./provider.ts";

/**
 * Deepest nesting of arrays and objects accepted in a Places body. Google's answers nest about
 * six deep; every walk over a body (redaction, translation, the legacy formatter) recurses, so a
 * hostile or broken upstream must not choose the depth.
 */
export const MAX_BODY_DEPTH = 32;

/** Largest Places body read; a 20-result Nearby Search answer is a few tens of KB. */
export const MAX_BODY_BYTES = 1024 * 1024;

/**
 * True when JSON text nests arrays or objects deeper than `max`. A scan of the text, without
 * recursion, so it runs before `JSON.parse` and before any walk over the parsed value.
 *
 * @example
 * ```ts
 * jsonTooDeep("[[1]]", 1); // true
 * jsonTooDeep('{"a": "[[["}', 1); // false: brackets in strings do not count
 * ```
 */
export function jsonTooDeep(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++; // backslash: skip the escaped char
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 91 || c === 123) {
      if (++depth > max) return true;
    } else if (c === 93 || c === 125) depth--;
  }
  return false;
}

/**
 * True when `s` can be a Places status: a word of capitals and underscores, at most 32 chars
 * (`OK`, `ZERO_RESULTS`, `OVER_QUERY_LIMIT`, ...). A status from upstream that is not one is
 * not passed on.
 *
 * @example
 * ```ts
 * isStatusWord("ZERO_RESULTS"); // true
 * isStatusWord("ok"); // false
 * ```
 */
export function isStatusWord(s: string): boolean {
  return STATUS_WORD.test(s);
}

const STATUS_WORD = /^[A-Z][A-Z_]{0,31}$/;

/** What every redacted secret is replaced with. */
export const REDACTED = "REDACTED";

/** Longest `error_message` we pass on: a WHATSAT reply is no place for a stack of text. */
const MAX_ERROR_MESSAGE = 200;

/**
 * An answer with no results and the given status (`ZERO_RESULTS` unless told otherwise).
 *
 * Bound 0 uses this too: Google defines `OK` as "at least one result", so an empty list is
 * `ZERO_RESULTS` for every provider, and no upstream request is made for it.
 *
 * @example
 * ```ts
 * emptyAnswer().body; // { html_attributions: [], results: [], status: "ZERO_RESULTS" }
 * ```
 */
export function emptyAnswer(status = "ZERO_RESULTS"): PlacesAnswer {
  return { body: { html_attributions: [], results: [], status } };
}

/**
 * A failure answer: `"results": []`, a non-OK status and a short, secret-free `error_message`.
 *
 * @example
 * ```ts
 * errorAnswer("UNKNOWN_ERROR", "Places request timed out after 5000 ms").body.status;
 * // "UNKNOWN_ERROR"
 * ```
 */
export function errorAnswer(
  status: string,
  message: string,
  secrets: readonly string[] = [],
): PlacesAnswer {
  const body: LegacyNearbyResponse = {
    error_message: shortMessage(message, secrets),
    html_attributions: [],
    results: [],
    status,
  };
  return { body };
}

/**
 * Replaces every occurrence of each secret (raw, and URL-encoded with escapes in either case)
 * with `REDACTED`, and the value of every `key=` query parameter and `X-Goog-Api-Key` header
 * quoted in the text, however it is encoded: an upstream or proxy that echoes the request may
 * re-encode it (`%2f` for `%2F`, `+` for a space), and the legacy API carries the key in the
 * query.
 *
 * @example
 * ```ts
 * redact("GET /x?key=abc123", ["abc123"]); // "GET /x?key=REDACTED"
 * redact("GET /x?a=1&key=a%2fb", []); // "GET /x?a=1&key=REDACTED"
 * ```
 */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (!secret) continue;
    if (secret.length >= WHOLE_WORD_BELOW) out = out.replaceAll(secret, REDACTED);
    else out = out.replace(new RegExp(asWord(regExpEscape(secret)), "g"), REDACTED);
    const encoded = encodeURIComponent(secret);
    if (encoded === secret) continue;
    const pattern = regExpEscape(encoded);
    out = out.replace(
      new RegExp(secret.length >= WHOLE_WORD_BELOW ? pattern : asWord(pattern), "gi"),
      REDACTED,
    );
  }
  return out.replace(QUOTED_KEY, `$1${REDACTED}`);
}

/**
 * A secret shorter than this is redacted only where it stands as a word of its own: a test key
 * `K` is not a key inside `"OK"` (it turned Google's status into `OREDACTED`), while a real
 * key (39 characters) is redacted wherever it appears, inside a longer token too.
 */
const WHOLE_WORD_BELOW = 16;

/** `pattern`, not touching a letter, digit, `_` or `-` on either side. */
function asWord(pattern: string): string {
  return `(?<![A-Za-z0-9_-])${pattern}(?![A-Za-z0-9_-])`;
}

/** A `key=` query parameter's value, or an `X-Goog-Api-Key` header's (up to a separator). */
const QUOTED_KEY = /([?&;]key=|x-goog-api-key\s*[:=]\s*)(?!REDACTED)[^&\s"'#<>|,]+/gi;

function regExpEscape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Redacts secrets in every string of a JSON-like value, in place, and returns it. Used on bodies
 * passed through from Google, which we do not control.
 *
 * @example
 * ```ts
 * redactDeep({ error_message: "bad key abc123" }, ["abc123"]); // { error_message: "bad key REDACTED" }
 * ```
 */
export function redactDeep<T>(value: T, secrets: readonly string[]): T {
  if (secrets.every((s) => !s)) return value;
  return walk(value, secrets) as T;
}

function walk(value: unknown, secrets: readonly string[]): unknown {
  if (typeof value === "string") return redact(value, secrets);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = walk(value[i], secrets);
    return value;
  }
  if (value !== null && typeof value === "object") {
    const obj = value as Record<string, unknown>;
    for (const key of Object.keys(obj)) {
      const clean = redact(key, secrets);
      const v = walk(obj[key], secrets);
      if (clean !== key) delete obj[key];
      obj[clean] = v;
    }
  }
  return value;
}

/**
 * Redacts, flattens whitespace (a reply must not break lines) and truncates a message.
 *
 * @example
 * ```ts
 * shortMessage("line one\nline two", []); // "line one line two"
 * ```
 */
export function shortMessage(message: string, secrets: readonly string[]): string {
  const flat = redact(message, secrets).replace(/\s+/g, " ").trim();
  return flat.length <= MAX_ERROR_MESSAGE ? flat : flat.slice(0, MAX_ERROR_MESSAGE - 3) + "...";
}

/**
 * Checks a query before any work. The protocol layer validates WHATSAT already; this guards
 * direct callers so no provider ever sends NaN or an absurd radius upstream.
 *
 * @example
 * ```ts
 * checkQuery({ lat: 91, lng: 0, radiusKm: 10, bound: 5 })?.body.status; // "INVALID_REQUEST"
 * ```
 */
export function checkQuery(q: PlacesQuery): PlacesAnswer | null {
  const bad = !Number.isFinite(q.lat) || Math.abs(q.lat) > 90 ||
    !Number.isFinite(q.lng) || Math.abs(q.lng) > 180 ||
    !Number.isFinite(q.radiusKm) || q.radiusKm <= 0 || q.radiusKm > 50 ||
    !Number.isInteger(q.bound) || q.bound < 0;
  return bad ? errorAnswer("INVALID_REQUEST", "Invalid location, radius or bound") : null;
}

/**
 * Prints a number in plain decimal (never exponent form), for query strings Google parses.
 *
 * @example
 * ```ts
 * plainNumber(1e-7); // "0.0000001"
 * plainNumber(34.06893); // "34.06893"
 * ```
 */
export function plainNumber(n: number): string {
  const s = String(n);
  if (!s.includes("e")) return s;
  // Only tiny magnitudes reach here (|n| ≤ 50000 in practice); 20 digits is toFixed's maximum.
  return n.toFixed(20).replace(/\.?0+$/, "");
}

/**
 * A radius in km as metres, rounded to the millimetre so `1.1` km becomes `1100`, not
 * `1100.0000000000002`; never below a millimetre (WHATSAT radii are over 0, and Google refuses 0).
 *
 * @example
 * ```ts
 * radiusMetres(1.1); // 1100
 * radiusMetres(0.0000001); // 0.001
 * ```
 */
export function radiusMetres(radiusKm: number): number {
  return Math.max(0.001, Math.round(radiusKm * 1e6) / 1e3);
}
