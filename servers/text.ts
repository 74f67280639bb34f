/**
 * Small text conversions used across the herd and the dashboard: hex, and an error as one line
 * of text. Pure; no secrets are formatted here that the caller did not pass in.
 *
 * @module
 */

/**
 * Bytes as lowercase hex.
 *
 * @example
 * ```ts
 * toHex(new Uint8Array([0, 171, 255])); // "00abff"
 * ```
 */
export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let out = "";
  for (let i = 0; i < b.length; i++) out += HEX[b[i]];
  return out;
}

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/**
 * `bytes` random bytes as hex (for secrets, tokens and handshake nonces).
 *
 * @example
 * ```ts
 * randomHex(16).length; // 32
 * ```
 */
export function randomHex(bytes: number): string {
  return toHex(crypto.getRandomValues(new Uint8Array(bytes)));
}

/**
 * A thrown value as text: an error's message (with its name when `withName`), anything else
 * as `String` gives it.
 *
 * @example
 * ```ts
 * errText(new TypeError("bad")); // "bad"
 * errText(new TypeError("bad"), true); // "TypeError: bad"
 * errText("plain"); // "plain"
 * ```
 */
export function errText(err: unknown, withName = false): string {
  if (!(err instanceof Error)) return String(err);
  return withName ? `${err.name}: ${err.message}` : err.message;
}
