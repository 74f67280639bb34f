/**
 * Checking the query parameters of the client endpoints (`/api/clusters`, `/api/clients`,
 * `/api/client`): each check returns the value or a message for a 400 JSON error.
 *
 * @module
 */

import { bytesToBinary } from "../servers/lines.ts";
import { MAX_CLIENT_ID } from "../servers/limits.ts";

/** A checked value, or why it was refused. */
export type Checked<T> = { ok: true; value: T } | { ok: false; error: string };

const encoder = new TextEncoder();

/** The protocol's whitespace (servers/protocol.ts): what no client ID can hold. */
const PROTOCOL_WS = /[ \t\r\n\f\v]/;

/**
 * A client ID (or a prefix of one) as typed, turned into the herd's binary string (its UTF-8
 * bytes, one char each). At most MAX_CLIENT_ID bytes; none of the protocol's whitespace (an ID
 * is one protocol field). Anything else an ID may hold is taken: NBSP, U+2028, a control byte
 * (refusing `\s` and controls made such clients' panels impossible to open). `empty` allows "".
 */
export function clientParam(name: string, v: string | undefined, empty: boolean): Checked<string> {
  v ??= "";
  if (v === "" && !empty) return { ok: false, error: `${name} is required` };
  const bytes = encoder.encode(v);
  if (bytes.length > MAX_CLIENT_ID) {
    return { ok: false, error: `${name} is longer than ${MAX_CLIENT_ID} bytes` };
  }
  if (PROTOCOL_WS.test(v)) {
    return {
      ok: false,
      error: `${name} cannot hold the protocol's whitespace (space, tab, CR, LF, FF, VT)`,
    };
  }
  return { ok: true, value: bytesToBinary(bytes) };
}

/** An integer parameter in `min..max`, `def` when absent. */
export function intParam(
  name: string,
  v: string | undefined,
  min: number,
  max: number,
  def: number,
): Checked<number> {
  if (v === undefined || v === "") return { ok: true, value: def };
  if (!/^\d{1,9}$/.test(v) || Number(v) < min || Number(v) > max) {
    return { ok: false, error: `${name} must be an integer from ${min} to ${max}` };
  }
  return { ok: true, value: Number(v) };
}

/** A view box `x0,y0,x1,y1` of finite numbers with x0 < x1 and y0 < y1, `def` when absent. */
export function boxParam(
  v: string | undefined,
  def: readonly [number, number, number, number],
): Checked<[number, number, number, number]> {
  if (v === undefined || v === "") return { ok: true, value: [...def] };
  const parts = v.length <= 200 ? v.split(",") : [];
  const nums = parts.map((p) => (/^-?\d+(\.\d+)?$/.test(p.trim()) ? Number(p) : NaN));
  if (
    nums.length !== 4 || !nums.every(Number.isFinite) || nums[0] >= nums[2] || nums[1] >= nums[3]
  ) {
    return { ok: false, error: "bbox must be x0,y0,x1,y1 (map units, x0 < x1, y0 < y1)" };
  }
  return { ok: true, value: nums as [number, number, number, number] };
}
