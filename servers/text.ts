/**
 * Small text conversions used across the herd and the dashboard: hex, an error as text, and
 * text made safe as one line of a terminal. Pure; no secrets are formatted here that the caller did not pass in.
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
 * as `String` gives it. Never throws: a value with no text form (an object without a
 * prototype, one whose `toString` throws) is said as such, so a report of a bug is not a bug.
 *
 * @example
 * ```ts
 * errText(new TypeError("bad")); // "bad"
 * errText(new TypeError("bad"), true); // "TypeError: bad"
 * errText("plain"); // "plain"
 * errText(Object.create(null)); // "(a thrown value with no text form)"
 * ```
 */
export function errText(err: unknown, withName = false): string {
  try {
    if (!(err instanceof Error)) return String(err);
    return withName ? `${err.name}: ${err.message}` : String(err.message);
  } catch {
    return "(a thrown value with no text form)";
  }
}

/**
 * `text` as one line for a terminal: control characters (LF, CR, ESC, ... C1 and the Unicode
 * line separators; not tab) escaped as in JSON. Error messages quote what they were given (a
 * name, a path, a flag): raw, a name with LF made two lines, and ESC reached the terminal.
 *
 * @example
 * ```ts
 * oneLine("no server named A\nB\x1b[2J"); // "no server named A\\nB\\u001b[2J"
 * ```
 */
export function oneLine(text: string): string {
  return text.replace(CONTROL, escapeControl);
}

const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]/g;

function escapeControl(c: string): string {
  if (c === "\n") return "\\n";
  if (c === "\r") return "\\r";
  return "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0");
}
