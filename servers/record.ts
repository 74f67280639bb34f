/**
 * A location record and its rules, in one place: its fields (`AtFields`), when it is valid
 * (`validateRecord`, `parseLocation`, the caps), which of two records of a client wins
 * (`compareRecords`, with the tie rule) and when two are the same (`sameRecord`). The store,
 * the links, persistence, the client protocol and the dashboard all apply these. Depends on
 * nothing but the size limits (limits.ts, itself a leaf).
 *
 * Text fields are "binary strings" (one char per byte), exactly as they came off the wire.
 *
 * @module
 */

import {
  MAX_CLIENT_ID,
  MAX_DIFF,
  MAX_LOCATION,
  MAX_RECORD_FIELDS,
  MAX_SERVER_NAME,
  MAX_TIME,
} from "./limits.ts";

/** The fields of an AT line: what a location record is, on the wire and in the store. */
export interface AtFields {
  /** The server that received the client's IAMAT. */
  origin: string;
  /** Receive time minus client time, e.g. `+0.263873386`. */
  diff: string;
  client: string;
  /** ISO 6709 text exactly as the client sent it, e.g. `+34.068930-118.445127`. */
  location: string;
  /** Client time exactly as sent, e.g. `1621464827.959498503`. */
  time: string;
}

/**
 * A protocol time: unsigned decimal seconds, any number of fraction digits. {@linkcode isTime}
 * tells the same without a regular expression.
 */
export const TIME = /^(\d+)(?:\.(\d+))?$/;

/**
 * True when `s` is a protocol time (`TIME`: digits, then optionally `.` and digits). A scanner:
 * with {@linkcode isField} and {@linkcode isDiff} it checks every new record a peer sends (four
 * a record, 16 an IAMAT in the seed herd), where regular expressions cost ~3% of the thread.
 *
 * @example
 * ```ts
 * isTime("1700000000.5"); // true
 * isTime("1700000000."); // false
 * ```
 */
export function isTime(s: string): boolean {
  const n = s.length;
  let i = 0;
  while (i < n && isDigit(s.charCodeAt(i))) i++;
  if (i === 0) return false;
  if (i === n) return true;
  if (s.charCodeAt(i) !== 46) return false;
  const fracStart = ++i;
  while (i < n && isDigit(s.charCodeAt(i))) i++;
  return i > fracStart && i === n;
}

/**
 * True when `s` is one field: at least one char, none of them protocol whitespace (space, tab,
 * LF, VT, FF, CR: what `[^ \t\r\n\f\v]+` allows).
 *
 * @example
 * ```ts
 * isField("kiwi.cs.ucla.edu"); // true
 * isField("a b"); // false
 * ```
 */
export function isField(s: string): boolean {
  const n = s.length;
  if (n === 0) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === 32 || (c >= 9 && c <= 13)) return false;
  }
  return true;
}

/**
 * True when `s` is a time difference as the herd formats it: a sign, digits, `.`, exactly nine
 * digits (`[+-]\d+\.\d{9}`).
 *
 * @example
 * ```ts
 * isDiff("+0.263873386"); // true
 * isDiff("+0.26"); // false
 * ```
 */
export function isDiff(s: string): boolean {
  const n = s.length;
  if (n < 12) return false;
  const sign = s.charCodeAt(0);
  if (sign !== 43 && sign !== 45) return false;
  const dot = n - 10;
  if (s.charCodeAt(dot) !== 46) return false;
  for (let i = 1; i < n; i++) if (i !== dot && !isDigit(s.charCodeAt(i))) return false;
  return true;
}

/**
 * Parses ISO 6709 `±lat±lng` in decimal degrees, checking the ranges exactly.
 * Returns undefined when the text is not a valid location.
 *
 * @example
 * ```ts
 * parseLocation("+34.068930-118.445127"); // { lat: 34.06893, lng: -118.445127 }
 * parseLocation("+91+0"); // undefined
 * ```
 */
export function parseLocation(text: string): { lat: number; lng: number } | undefined {
  // A scanner, not a regular expression: this runs for every IAMAT and every new record a peer
  // sends, and a match with six captures allocates an array and six strings each time.
  const mid = scanCoordinate(text, 0, 90);
  if (mid < 0) return undefined;
  const lat = scanned;
  if (scanCoordinate(text, mid, 180) !== text.length) return undefined;
  return {
    lat: Number.isNaN(lat) ? Number(text.slice(0, mid)) : lat,
    lng: Number.isNaN(scanned) ? Number(text.slice(mid)) : scanned,
  };
}

/** Powers of ten that doubles hold exactly (10^0 to 10^22). */
const EXACT_POW10 = Array.from({ length: 23 }, (_, i) => Number(`1e${i}`));

/**
 * The value of the coordinate {@linkcode scanCoordinate} last accepted, or NaN when it has more
 * digits than the exact way below allows (the caller then parses the text).
 */
let scanned = NaN;

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/**
 * Scans one coordinate, `[+-]int[.frac]`, at `start`, and checks exactly that its magnitude is
 * at most `limit` (an integer below 1000). Returns the index after it, or -1.
 */
function scanCoordinate(text: string, start: number, limit: number): number {
  const n = text.length;
  const sign = text.charCodeAt(start);
  if (sign !== 43 && sign !== 45) return -1;
  let i = start + 1;
  const intStart = i;
  while (i < n && isDigit(text.charCodeAt(i))) i++;
  const intEnd = i;
  if (intEnd === intStart) return -1;
  let fracStart = i;
  if (i < n && text.charCodeAt(i) === 46) {
    fracStart = ++i;
    while (i < n && isDigit(text.charCodeAt(i))) i++;
    if (i === fracStart) return -1;
  }
  let first = intStart;
  while (first < intEnd - 1 && text.charCodeAt(first) === 48) first++;
  if (intEnd - first > 3) return -1; // 1000 or more
  let value = 0;
  for (let k = first; k < intEnd; k++) value = value * 10 + text.charCodeAt(k) - 48;
  if (value > limit) return -1;
  if (value === limit) {
    for (let k = fracStart; k < i; k++) if (text.charCodeAt(k) !== 48) return -1;
  }
  // The value as `Number` would parse it, without a slice or a string parse: its digits (at
  // most 15: an integer below 2^53) over a power of ten up to 10^22 are two exact doubles, and
  // IEEE division rounds their quotient correctly, as `Number` does (Clinger's fast path).
  const frac = i - fracStart;
  if (intEnd - first + frac > 15) scanned = NaN;
  else {
    let m = value;
    for (let k = fracStart; k < i; k++) m = m * 10 + text.charCodeAt(k) - 48;
    const v = frac === 0 ? m : m / EXACT_POW10[frac];
    scanned = sign === 45 ? -v : v;
  }
  return i;
}

/**
 * Compares two protocol times exactly as decimals: negative, zero or positive.
 *
 * @example
 * ```ts
 * compareTimes("1.50", "1.5"); // 0
 * compareTimes("10", "9.999"); // 1
 * ```
 */
export function compareTimes(a: string, b: string): number {
  if (a === b) return 0;
  // Char by char, no allocation: this runs for every record a server offers to its store.
  let ad = a.indexOf(".");
  if (ad < 0) ad = a.length;
  let bd = b.indexOf(".");
  if (bd < 0) bd = b.length;
  let ai = 0;
  while (ai < ad && a.charCodeAt(ai) === 48) ai++;
  let bi = 0;
  while (bi < bd && b.charCodeAt(bi) === 48) bi++;
  if (ad - ai !== bd - bi) return ad - ai - (bd - bi);
  for (; ai < ad; ai++, bi++) {
    const d = a.charCodeAt(ai) - b.charCodeAt(bi);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  // Fractions: a missing digit is a zero.
  const an = a.length - ad - 1;
  const bn = b.length - bd - 1;
  for (let i = 0; i < Math.max(an, bn); i++) {
    const x = i < an ? a.charCodeAt(ad + 1 + i) : 48;
    const y = i < bn ? b.charCodeAt(bd + 1 + i) : 48;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

function compareText(a: string, b: string): number {
  return a === b ? 0 : a < b ? -1 : 1;
}

/**
 * Compares two time differences (`[+-]D+.D{9}`) as signed decimals: negative, zero or positive.
 * `+0.000000000` and `-0.000000000` are equal.
 *
 * @example
 * ```ts
 * compareDiffs("-1.000000000", "+0.500000000"); // -1
 * compareDiffs("+2.000000000", "+10.000000000"); // -1
 * ```
 */
export function compareDiffs(a: string, b: string): number {
  if (a === b) return 0;
  const an = a.charCodeAt(0) === 45; // '-'
  const bn = b.charCodeAt(0) === 45;
  const am = a.charCodeAt(0) === 43 || an ? a.slice(1) : a;
  const bm = b.charCodeAt(0) === 43 || bn ? b.slice(1) : b;
  const mag = compareTimes(am, bm);
  if (an === bn) return an ? -mag : mag;
  // Opposite signs: equal only when both are zero.
  if (mag === 0 && compareTimes(am, "0") === 0) return 0;
  return an ? -1 : 1;
}

/**
 * True when two records of the same client are the same record, byte for byte (a duplicate):
 * what {@linkcode compareRecords} calls 0, without parsing anything.
 *
 * @example
 * ```ts
 * const r = { origin: "Hill", diff: "+0.1", client: "k", location: "+1+2", time: "5" };
 * sameRecord(r, { ...r }); // true
 * sameRecord(r, { ...r, time: "5.0" }); // false: equal times, yet another record
 * ```
 */
export function sameRecord(a: AtFields, b: AtFields): boolean {
  return a.time === b.time && a.location === b.location && a.origin === b.origin &&
    a.diff === b.diff;
}

/**
 * Orders two records of the same client: positive when `a` should replace `b`. The newer client
 * time wins; equal times are broken by the raw time text, then the location (bytewise), then the
 * smaller time difference (the earlier receipt: a client that sends the very same IAMAT again,
 * here or elsewhere, later, does not replace the first), then origin and diff bytewise, so every
 * server picks the same winner and the herd converges. Zero means the same record (a duplicate).
 *
 * @example
 * ```ts
 * const r = { origin: "Hill", diff: "+0.1", client: "k", location: "+1+2", time: "5" };
 * compareRecords({ ...r, time: "6" }, r) > 0; // true: newer
 * compareRecords(r, r); // 0: duplicate
 * compareRecords({ ...r, diff: "+0.2" }, r) < 0; // true: the same report received later
 * ```
 */
export function compareRecords(a: AtFields, b: AtFields): number {
  // The common case on a link is the same record arriving again: settle it without parsing.
  if (sameRecord(a, b)) return 0;
  return compareTimes(a.time, b.time) ||
    compareText(a.time, b.time) ||
    compareText(a.location, b.location) ||
    compareDiffs(b.diff, a.diff) ||
    compareText(a.origin, b.origin) ||
    compareText(a.diff, b.diff);
}

/**
 * Validates the fields of an AT record received from a peer (never trust a peer's bytes).
 * Returns the parsed coordinates, or undefined when any field is invalid.
 *
 * @example
 * ```ts
 * validateRecord({ origin: "Hill", diff: "-0.5", client: "k", location: "+1+2", time: "3" });
 * // { lat: 1, lng: 2 }
 * ```
 */
export function validateRecord(r: AtFields): { lat: number; lng: number } | undefined {
  if (r.origin.length > MAX_SERVER_NAME || r.diff.length > MAX_DIFF) return undefined;
  if (!recordFieldsFit(r.client, r.location, r.time)) return undefined;
  if (!isField(r.origin) || !isDiff(r.diff)) return undefined;
  if (!isField(r.client)) return undefined;
  if (!isTime(r.time)) return undefined;
  return parseLocation(r.location);
}

/**
 * {@linkcode validateRecord} for a record still in its bytes, one byte per char (as the fields
 * decode: `binaryAt`), each field `[from, to)` of `bytes` and free of protocol whitespace
 * already (a link's plain `R` line: wire.ts `recordFieldsAt`), so only the rest is checked: the
 * caps, the diff, the time and the location, whose coordinates it returns. The same answer as
 * `validateRecord` of the decoded fields, without decoding any: a link checks every new record
 * of a catch-up (1,000,000 after a restart) before it decodes it (BENCHMARKS.md, "Catch-up of
 * 2026-11-28 (branch `catchup16`)").
 *
 * @example
 * ```ts
 * const b = new TextEncoder().encode("Hill +0.500000000 k +1+2 3");
 * validFieldsAt(b, 0, 4, 5, 17, 18, 19, 20, 24, 25, 26); // { lat: 1, lng: 2 }
 * ```
 */
export function validFieldsAt(
  bytes: Uint8Array,
  origin: number,
  originEnd: number,
  diff: number,
  diffEnd: number,
  client: number,
  clientEnd: number,
  location: number,
  locationEnd: number,
  time: number,
  timeEnd: number,
): { lat: number; lng: number } | undefined {
  const clientLength = clientEnd - client;
  const locationLength = locationEnd - location;
  const timeLength = timeEnd - time;
  if (originEnd - origin > MAX_SERVER_NAME || diffEnd - diff > MAX_DIFF) return undefined;
  if (
    clientLength > MAX_CLIENT_ID || locationLength > MAX_LOCATION || timeLength > MAX_TIME ||
    clientLength + locationLength + timeLength > MAX_RECORD_FIELDS
  ) return undefined;
  if (!isDiffAt(bytes, diff, diffEnd) || !isTimeAt(bytes, time, timeEnd)) return undefined;
  const mid = scanCoordinateAt(bytes, location, locationEnd, 90);
  if (mid < 0) return undefined;
  const lat = scanned;
  if (scanCoordinateAt(bytes, mid, locationEnd, 180) !== locationEnd) return undefined;
  const lng = scanned;
  if (Number.isNaN(lat) || Number.isNaN(lng)) {
    // More digits than the exact way takes (rare): parsed as text, as parseLocation does.
    let text = "";
    for (let i = location; i < locationEnd; i++) text += String.fromCharCode(bytes[i]);
    return parseLocation(text);
  }
  return { lat, lng };
}

/** {@linkcode isDiff} of `bytes[from, to)`. */
function isDiffAt(bytes: Uint8Array, from: number, to: number): boolean {
  if (to - from < 12) return false;
  const sign = bytes[from];
  if (sign !== 43 && sign !== 45) return false;
  const dot = to - 10;
  if (bytes[dot] !== 46) return false;
  for (let i = from + 1; i < to; i++) if (i !== dot && !isDigit(bytes[i])) return false;
  return true;
}

/** {@linkcode isTime} of `bytes[from, to)`. */
function isTimeAt(bytes: Uint8Array, from: number, to: number): boolean {
  let i = from;
  while (i < to && isDigit(bytes[i])) i++;
  if (i === from) return false;
  if (i === to) return true;
  if (bytes[i] !== 46) return false;
  const fracStart = ++i;
  while (i < to && isDigit(bytes[i])) i++;
  return i > fracStart && i === to;
}

/** {@linkcode scanCoordinate} of the coordinate at `start` in `bytes[, end)`. */
function scanCoordinateAt(bytes: Uint8Array, start: number, end: number, limit: number): number {
  if (start >= end) return -1;
  const sign = bytes[start];
  if (sign !== 43 && sign !== 45) return -1;
  let i = start + 1;
  const intStart = i;
  while (i < end && isDigit(bytes[i])) i++;
  const intEnd = i;
  if (intEnd === intStart) return -1;
  let fracStart = i;
  if (i < end && bytes[i] === 46) {
    fracStart = ++i;
    while (i < end && isDigit(bytes[i])) i++;
    if (i === fracStart) return -1;
  }
  let first = intStart;
  while (first < intEnd - 1 && bytes[first] === 48) first++;
  if (intEnd - first > 3) return -1; // 1000 or more
  let value = 0;
  for (let k = first; k < intEnd; k++) value = value * 10 + bytes[k] - 48;
  if (value > limit) return -1;
  if (value === limit) {
    for (let k = fracStart; k < i; k++) if (bytes[k] !== 48) return -1;
  }
  const frac = i - fracStart;
  if (intEnd - first + frac > 15) scanned = NaN;
  else {
    let m = value;
    for (let k = fracStart; k < i; k++) m = m * 10 + bytes[k] - 48;
    const v = frac === 0 ? m : m / EXACT_POW10[frac];
    scanned = sign === 45 ? -v : v;
  }
  return i;
}

/**
 * True when a record's client fields are within the caps of limits.ts: each field alone, and
 * the three together (what one client line can carry).
 *
 * @example
 * ```ts
 * recordFieldsFit("kiwi", "+1+2", "3"); // true
 * recordFieldsFit("k".repeat(257), "+1+2", "3"); // false
 * ```
 */
export function recordFieldsFit(client: string, location: string, time: string): boolean {
  return client.length <= MAX_CLIENT_ID && location.length <= MAX_LOCATION &&
    time.length <= MAX_TIME && client.length + location.length + time.length <= MAX_RECORD_FIELDS;
}
