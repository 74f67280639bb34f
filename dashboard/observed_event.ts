/**
 * The shape an event read from a member's observer stream may have before a remote dashboard
 * passes it on (dashboard/remote_herd.ts). A member holds the secret and is trusted with data, not
 * with the dashboard's memory: an `EVENT` line may be any JSON up to the observer line limit
 * (~500 KB), and the dashboard keeps its newest 10,000 events. Before, every field went on whole,
 * so a 200 KB `remote`, `reason` or extra field per event held gigabytes (adv15).
 *
 * @module
 */

import type { HerdEvent } from "../servers/events.ts";
import { MAX_SERVER_NAME } from "../servers/limits.ts";

/**
 * Longest text field kept whole (bytes): far above any name, address or reason a server sends.
 * Longer ones are cut, with how many bytes more there were.
 */
export const MAX_EVENT_TEXT = 1024;

/** Most records (or client IDs) a batch event may name: a server names 8 (observe.ts). */
export const MAX_NAMED = 64;

/** Text fields the dashboard's hub itself cuts to what a page shows (hub.ts `longText`). */
const HUB_CLIPPED: Record<string, string> = {
  "invalid": "line",
  "line.in": "line",
  "reply.out": "reply",
  "whatsat": "client",
};

/** The five text fields of a record. */
const RECORD_FIELDS = ["client", "origin", "diff", "location", "time"] as const;

/**
 * `e` rebuilt to its bounded shape, or undefined when it cannot be one: not an object, no `kind`,
 * or it names another server than the stream's (a server sends only its own events, observe.ts).
 * Text fields over {@linkcode MAX_EVENT_TEXT} are cut (but those the hub cuts itself, and a
 * record's fields, which the hub cuts and the map needs whole); numbers, booleans and null are
 * kept; the only nested values kept are a location event's `record`, a batch's `records` (at
 * most {@linkcode MAX_NAMED}, each with its own fields only; a link batch's entries are client
 * IDs, `""` for one that is none), a late receipt's `peers` (names)
 * and a reply's `places`; any other nested value, or a record of the wrong types, drops the
 * event (as malformed JSON is).
 *
 * @example
 * ```ts
 * boundedEvent({ kind: "server.down", t: 1, server: "Hill", junk: [1] }, "Hill"); // undefined
 * boundedEvent({ kind: "server.down", t: 1, server: "Hill" }, "Jaquez"); // undefined
 * boundedEvent({ kind: "link.down", t: 1, server: "Hill", peer: "Smith", reason: "x" }, "Hill");
 * // the same event, a fresh object
 * ```
 */
export function boundedEvent(e: unknown, server: string): HerdEvent | undefined {
  if (!isObject(e) || typeof e.kind !== "string" || e.server !== server) return undefined;
  if (e.kind.length > MAX_SERVER_NAME) return undefined;
  const whole = HUB_CLIPPED[e.kind];
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) {
    if (k === "__proto__") continue;
    if (typeof v === "string") out[k] = k === whole ? v : clipText(v);
    else if (v === null || typeof v === "number" || typeof v === "boolean") out[k] = v;
    else {
      const nested = boundedNested(e.kind, k, v);
      if (nested === undefined) return undefined;
      out[k] = nested;
    }
  }
  return out as unknown as HerdEvent;
}

/** A nested value of an event of `kind`, rebuilt; undefined when it may not be there. */
function boundedNested(kind: string, key: string, v: unknown): unknown {
  if (key === "record" && (kind === "location.accepted" || kind === "location.dropped")) {
    return isObject(v) ? record(v) : undefined;
  }
  if (key === "records" && Array.isArray(v) && v.length <= MAX_NAMED) {
    if (kind === "location.batch") {
      const out = [];
      for (const r of v) {
        const rec = isObject(r) ? record(r) : undefined;
        if (rec === undefined || typeof r.lat !== "number" || typeof r.lng !== "number") return;
        out.push({ ...rec, lat: r.lat, lng: r.lng });
      }
      return out;
    }
    if (kind === "propagation.sent" || kind === "propagation.received") {
      const out = [];
      // Only client IDs are named (observe.ts); anything else stands for an unnamed record.
      for (const r of v) {
        out.push({ client: isObject(r) && typeof r.client === "string" ? clipText(r.client) : "" });
      }
      return out;
    }
  }
  if (key === "peers" && kind === "receipt.late" && Array.isArray(v) && v.length <= MAX_NAMED) {
    return v.every((p) => typeof p === "string" && p.length <= MAX_SERVER_NAME)
      ? [...v]
      : undefined;
  }
  if (key === "places" && kind === "reply.out" && isObject(v)) {
    return typeof v.status === "string" && typeof v.results === "number"
      ? { status: clipText(v.status), results: v.results }
      : undefined;
  }
  return undefined;
}

/** A record's five text fields (whole: the hub cuts them for pages), or undefined. */
function record(r: Record<string, unknown>): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const k of RECORD_FIELDS) {
    const v = r[k];
    if (typeof v !== "string") return undefined;
    out[k] = v;
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * A binary string cut to {@linkcode MAX_EVENT_TEXT} bytes where a UTF-8 character starts, with
 * how many bytes more there were (ASCII, so it stays a binary string).
 */
function clipText(s: string): string {
  if (s.length <= MAX_EVENT_TEXT) return s;
  let cut = MAX_EVENT_TEXT;
  for (let k = 0; k < 3 && cut > 0 && (s.charCodeAt(cut) & 0xc0) === 0x80; k++) cut--;
  // Copied char by char: a slice would be a view that keeps the whole text alive.
  const codes = new Array<number>(cut);
  for (let i = 0; i < cut; i++) codes[i] = s.charCodeAt(i);
  return `${String.fromCharCode(...codes)}... (+${s.length - cut} bytes)`;
}
