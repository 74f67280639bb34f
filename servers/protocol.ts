/**
 * The herd protocol's pure core: parse and validate client commands, format replies, and the
 * exact time arithmetic. No I/O here; `connection.ts` and `server.ts` wrap it. A record's own
 * rules (validity, order, ties) are in `record.ts`.
 *
 * All text is handled as "binary strings" (one char per byte, latin1) so that every field the
 * protocol echoes comes back byte for byte, whatever the client sent.
 *
 * @module
 */

import { MAX_CLIENT_ID } from "./limits.ts";
import { type AtFields, isTime, parseLocation, recordFieldsFit, TIME } from "./record.ts";
import type { InvalidReason } from "./reasons.ts";

/** The protocol's whitespace: space, tab, CR, LF, form feed, vertical tab (not NBSP, not `\s`). */
const WS_RUN = /[ \t\r\n\f\v]+/;
const WS_TRIM = /^[ \t\r\n\f\v]+|[ \t\r\n\f\v]+$/g;
const OTHER_WS = /[\t\r\n\f\v]/;
const WS_ONLY = /^[ \t\r\n\f\v]*$/;

/** Longest client ID accepted, in bytes (defined in limits.ts with every other limit). */
export { MAX_CLIENT_ID };

const DECIMAL = /^(\d+)(?:\.(\d+))?$/;
/** Unsigned decimal digits, nothing else (sequence numbers, bounds). */
export const INTEGER = /^\d+$/;
const LEADING_ZEROS = /^0+(?=\d)/;
const ZEROS = /^0+$/;
const ZEROS_OR_EMPTY = /^0*$/;

/** A valid IAMAT command. */
export interface IamatCommand {
  verb: "IAMAT";
  client: string;
  location: string;
  time: string;
  lat: number;
  lng: number;
}

/** A valid WHATSAT command. */
export interface WhatsatCommand {
  verb: "WHATSAT";
  client: string;
  radiusKm: number;
  bound: number;
}

/** An invalid line, with why, and the verb it claimed when that was IAMAT or WHATSAT. */
export interface InvalidCommand {
  verb: "INVALID";
  line: string;
  reason: InvalidReason;
  claimed?: "IAMAT" | "WHATSAT";
}

/** The result of parsing one client line. */
export type Command =
  | IamatCommand
  | WhatsatCommand
  | { verb: "BLANK" }
  | InvalidCommand;

/**
 * Splits a line into fields on runs of protocol whitespace.
 *
 * @example
 * ```ts
 * splitFields("  IAMAT kiwi\t+1+2 3\r"); // ["IAMAT", "kiwi", "+1+2", "3"]
 * ```
 */
export function splitFields(line: string): string[] {
  // Nearly every line is fields joined by single spaces: split on " " (no regex, no trimmed
  // copy), and take the general path only for other whitespace, runs or ends.
  const n = line.length;
  if (
    n > 0 && line.charCodeAt(0) !== 32 && line.charCodeAt(n - 1) !== 32 &&
    !OTHER_WS.test(line) && !line.includes("  ")
  ) {
    return line.split(" ");
  }
  const trimmed = line.replace(WS_TRIM, "");
  return trimmed === "" ? [] : trimmed.split(WS_RUN);
}

/**
 * Trims protocol whitespace from both ends, leaving inner bytes unchanged.
 *
 * @example
 * ```ts
 * trimLine(" WHATSAT  x 1- 5 \r"); // "WHATSAT  x 1- 5"
 * ```
 */
export function trimLine(line: string): string {
  return line.replace(WS_TRIM, "");
}

/**
 * True when an unsigned decimal `int[.frac]` is at most `limit` (an integer), exactly: no float
 * rounding, so `90.0000000000000000001` is over 90 although it parses to 90.
 */
function decimalAtMost(intPart: string, frac: string | undefined, limit: number): boolean {
  const digits = intPart.replace(LEADING_ZEROS, "");
  const limitText = String(limit);
  if (digits.length !== limitText.length) return digits.length < limitText.length;
  if (digits !== limitText) return digits < limitText;
  return frac === undefined || ZEROS_OR_EMPTY.test(frac);
}

/** True when every digit of an unsigned decimal is zero. */
function decimalIsZero(intPart: string, frac: string | undefined): boolean {
  return ZEROS.test(intPart) && (frac === undefined || ZEROS.test(frac));
}

/**
 * True for a line of the protocol's whitespace only (space, tab, CR, LF, FF, VT; not NBSP, which
 * `trim()` also drops): a blank line, which gets no reply.
 *
 * @example
 * ```ts
 * isBlankLine(" \t"); // true
 * isBlankLine("\u00a0"); // false: the server answers it with `?`
 * ```
 */
export function isBlankLine(line: string): boolean {
  return WS_ONLY.test(line);
}

/**
 * Parses one client line (a binary string without its LF).
 *
 * @example
 * ```ts
 * parseCommand("IAMAT kiwi +34.06-118.44 1700000000.5").verb; // "IAMAT"
 * parseCommand("iamat kiwi +34.06-118.44 1").verb; // "INVALID" (reason "unknown-verb")
 * parseCommand(" \t").verb; // "BLANK"
 * ```
 */
export function parseCommand(line: string): Command {
  if (isBlankLine(line)) return { verb: "BLANK" };
  const fields = splitFields(line);
  const verb = fields[0];
  if (verb !== "IAMAT" && verb !== "WHATSAT") return invalidCommand(line, "unknown-verb");
  const invalid = (reason: InvalidReason) => invalidCommand(line, reason, verb);
  if (fields.length !== 4) return invalid("arity");
  const [, client, a, b] = fields;
  if (client.length > MAX_CLIENT_ID) return invalid("bad-client");
  if (verb === "IAMAT") {
    // The caps hold whatever line limit a server runs with, so every record fits a peer line.
    if (!recordFieldsFit(client, a, b)) return invalid("field-too-long");
    if (!isTime(b)) return invalid("bad-time");
    const loc = parseLocation(a);
    if (!loc) return invalid("bad-location");
    return { verb, client, location: a, time: b, lat: loc.lat, lng: loc.lng };
  }
  const r = DECIMAL.exec(a);
  if (!r || decimalIsZero(r[1], r[2]) || !decimalAtMost(r[1], r[2], 50)) {
    return invalid("bad-radius");
  }
  if (!INTEGER.test(b) || !decimalAtMost(b, undefined, 20)) return invalid("bad-bound");
  return { verb, client, radiusKm: Number(a), bound: Number(b) };
}

/**
 * An invalid command: the line, why, and the verb it claimed (IAMAT or WHATSAT) if any.
 *
 * @example
 * ```ts
 * invalidCommand("IAMAT k +91+0 1", "bad-location", "IAMAT").reason; // "bad-location"
 * ```
 */
export function invalidCommand(
  line: string,
  reason: InvalidReason,
  claimed?: "IAMAT" | "WHATSAT",
): InvalidCommand {
  return claimed === undefined
    ? { verb: "INVALID", line, reason }
    : { verb: "INVALID", line, reason, claimed };
}

/**
 * The reply to an invalid command: `? ` plus the trimmed line, then LF.
 *
 * @example
 * ```ts
 * formatInvalid("  WHATSAT kiwi 1- 5\r"); // "? WHATSAT kiwi 1- 5\n"
 * ```
 */
export function formatInvalid(line: string): string {
  return `? ${trimLine(line)}\n`;
}

/**
 * The AT line for a record, without LF.
 *
 * @example
 * ```ts
 * formatAt({ origin: "Hill", diff: "+0.5", client: "k", location: "+1+2", time: "3" });
 * // "AT Hill +0.5 k +1+2 3"
 * ```
 */
export function formatAt(r: AtFields): string {
  return `AT ${r.origin} ${r.diff} ${r.client} ${r.location} ${r.time}`;
}

/**
 * The full WHATSAT reply: the stored AT line, LF, the JSON (no blank line inside, no trailing
 * newline), then two LFs.
 *
 * @example
 * ```ts
 * formatWhatsatReply("AT Hill +0.5 k +1+2 3", '{\n   "status" : "OK"\n}');
 * // 'AT Hill +0.5 k +1+2 3\n{\n   "status" : "OK"\n}\n\n'
 * ```
 */
export function formatWhatsatReply(atLine: string, json: string): string {
  return `${atLine}\n${json}\n\n`;
}

// ---------------------------------------------------------------------------------------------
// Exact time arithmetic.

/** A non-negative decimal as an integer numerator over 10^scale. */
interface Fixed {
  units: bigint;
  scale: number;
}

function parseTime(time: string): Fixed {
  const m = TIME.exec(time);
  if (!m) throw new RangeError(`not a protocol time: ${time}`);
  const frac = shortFraction(m[2] ?? "");
  // Leading zeros are no digits of the value, only of BigInt's parsing work.
  let i = 0;
  while (i < m[1].length - 1 && m[1].charCodeAt(i) === 48) i++;
  return { units: BigInt(m[1].slice(i) + frac), scale: frac.length };
}

/**
 * A fraction cut to 10 digits that compares with every 9-digit (nanosecond) value, and rounds to
 * one, exactly as the whole fraction does: digits past the ninth only ever decide a rounding or a
 * tie, so they become one digit of the same class: none (all zeros), 1 (under half a
 * nanosecond), 5 (exactly half), 9 (over half). A client's 65,000-digit fraction cost ~20 ms of
 * BigInt work per IAMAT; this is linear and cheap.
 */
function shortFraction(frac: string): string {
  if (frac.length <= 10) return frac;
  const tail = frac.slice(9);
  const first = tail.charCodeAt(0) - 48;
  const restZero = /^0*$/.test(tail.slice(1));
  const digit = first === 0 && restZero
    ? ""
    : first < 5
    ? "1"
    : first > 5
    ? "9"
    : restZero
    ? "5"
    : "9";
  return frac.slice(0, 9) + digit;
}

/** Integer digits (leading zeros aside) past which a time is later than any clock plus any bound. */
const FAR_DIGITS = 20;

/**
 * Formats `receive − client` with an explicit sign and exactly 9 fractional digits, computed
 * exactly from integer nanoseconds and the client's decimal text (fractions longer than 9 digits
 * are rounded half to even, like printf on an exact decimal).
 *
 * @example
 * ```ts
 * formatTimeDiff(1621464828223372889n, "1621464827.959498503"); // "+0.263874386"
 * formatTimeDiff(1000000000n, "1"); // "+0.000000000"
 * ```
 */
export function formatTimeDiff(receiveNs: bigint, clientTime: string): string {
  const c = parseTime(clientTime);
  const scale = Math.max(9, c.scale);
  const cUnits = c.units * 10n ** BigInt(scale - c.scale);
  const rUnits = receiveNs * 10n ** BigInt(scale - 9);
  let diff = rUnits - cUnits;
  const negative = diff < 0n;
  if (negative) diff = -diff;
  // Round the magnitude to nanoseconds, half to even.
  const divisor = 10n ** BigInt(scale - 9);
  let ns = diff / divisor;
  const rem = diff % divisor;
  const twice = rem * 2n;
  if (twice > divisor || (twice === divisor && ns % 2n === 1n)) ns += 1n;
  const sign = negative && ns !== 0n ? "-" : "+";
  const whole = ns / 1_000_000_000n;
  const frac = (ns % 1_000_000_000n).toString().padStart(9, "0");
  return `${sign}${whole}.${frac}`;
}

/** Digits of a time's whole seconds that the fast path of {@linkcode iamatDiff} takes. */
const FAST_WHOLE_DIGITS = 15;
/** Bounds on the bound and the clock for the fast path: every sum it forms stays below 2^53. */
const FAST_MAX_S = 1e15;
const FAST_MAX_NS = 10n ** 24n;

/**
 * An IAMAT's time check and diff in one: undefined when `clientTime` lies more than `maxAheadS`
 * seconds after `receiveNs` ({@linkcode tooFarAhead}), else {@linkcode formatTimeDiff}'s text.
 * The same results, but a client's time of at most 15 whole digits and 9 fraction digits (every
 * real clock) is read once into two numbers, seconds and nanoseconds, and worked in doubles, where
 * every value is an exact integer (|seconds| < 2^53, nanoseconds < 10^9): no regular expression,
 * no BigInt arithmetic. On Hill the two exact paths were ~2% of the thread per IAMAT
 * (BENCHMARKS.md, "Five processes of 2026-11-28"). Other times take the exact paths.
 *
 * @example
 * ```ts
 * iamatDiff(1621464828223372889n, "1621464827.959498503", 86400); // "+0.263874386"
 * iamatDiff(1_700_000_000_000_000_000n, "99999999999", 86400); // undefined
 * ```
 */
export function iamatDiff(
  receiveNs: bigint,
  clientTime: string,
  maxAheadS: number,
): string | undefined {
  const n = clientTime.length;
  let cs = 0;
  let i = 0;
  for (; i < n; i++) {
    const d = clientTime.charCodeAt(i) - 48;
    if (d < 0 || d > 9) break;
    cs = cs * 10 + d;
  }
  let cn = 0;
  let fast = i > 0 && i <= FAST_WHOLE_DIGITS && Number.isInteger(maxAheadS) &&
    maxAheadS >= 0 && maxAheadS <= FAST_MAX_S && receiveNs >= 0n && receiveNs < FAST_MAX_NS;
  if (fast && i < n) {
    // A '.' and 1-9 digits, read as nanoseconds.
    const fracStart = i + 1;
    fast = clientTime.charCodeAt(i) === 46 && n > fracStart && n - fracStart <= 9;
    for (let j = fracStart; fast && j < fracStart + 9; j++) {
      if (j >= n) cn *= 10;
      else {
        const d = clientTime.charCodeAt(j) - 48;
        if (d < 0 || d > 9) fast = false;
        else cn = cn * 10 + d;
      }
    }
  }
  if (!fast) {
    return tooFarAhead(clientTime, receiveNs, maxAheadS)
      ? undefined
      : formatTimeDiff(receiveNs, clientTime);
  }
  const rs = Number(receiveNs / 1_000_000_000n);
  const rn = Number(receiveNs % 1_000_000_000n);
  // client − receive > maxAheadS s, exactly: (cs − rs − maxAheadS)·10^9 + (cn − rn) > 0, where
  // |cn − rn| < 10^9, so the seconds decide unless they tie.
  const k = cs - rs - maxAheadS;
  if (k > 0 || (k === 0 && cn > rn)) return undefined;
  // receive − client as whole seconds and nanoseconds of one sign.
  let ds = rs - cs;
  let dn = rn - cn;
  if (ds > 0 && dn < 0) {
    ds -= 1;
    dn += 1_000_000_000;
  } else if (ds < 0 && dn > 0) {
    ds += 1;
    dn -= 1_000_000_000;
  }
  const negative = ds < 0 || dn < 0;
  const frac = String(negative ? -dn : dn);
  return `${negative ? "-" : "+"}${negative ? -ds : ds}.${"000000000".slice(frac.length)}${frac}`;
}

/**
 * True when a client's time lies more than `maxAheadS` seconds after `receiveNs` (exactly, on
 * the decimal text): such an IAMAT is invalid, or one forged far-future time would make every
 * later real report of that client stale, at every server, for good.
 *
 * @example
 * ```ts
 * tooFarAhead("99999999999", 1_700_000_000_000_000_000n, 86400); // true
 * tooFarAhead("1700000000.5", 1_700_000_000_000_000_000n, 86400); // false
 * ```
 */
export function tooFarAhead(clientTime: string, receiveNs: bigint, maxAheadS: number): boolean {
  // Seconds of 20 digits and more lie past 2^53 s of bound after any clock: no BigInt needed.
  const dot = clientTime.indexOf(".");
  const whole = dot < 0 ? clientTime : clientTime.slice(0, dot);
  let zeros = 0;
  while (zeros < whole.length && whole.charCodeAt(zeros) === 48) zeros++;
  if (whole.length - zeros >= FAR_DIGITS && TIME.test(clientTime)) return true;
  const c = parseTime(clientTime);
  const scale = BigInt(Math.max(9, c.scale));
  const limit = (receiveNs + BigInt(maxAheadS) * 1_000_000_000n) * 10n ** (scale - 9n);
  return c.units * 10n ** (scale - BigInt(c.scale)) > limit;
}
