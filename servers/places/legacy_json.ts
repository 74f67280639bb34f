/**
 * Serializes a value the way Google's legacy Places web service prints JSON.
 *
 * Google's legacy output is jsoncpp's `StyledWriter` layout: 3-space indentation, `"key" : value`,
 * keys in sorted order (jsoncpp objects are ordered maps), `[]`/`{}` for empty containers, and an
 * array of primitives on one line (`[ "a", "b" ]`) unless it would be too long (the writer's
 * 74-column "right margin" rule), plus Google's HTML-safe escapes for `<`, `>` and `&`.
 *
 * WHATSAT replies embed this text, so it must never contain a raw line break: every string is
 * escaped, which also means no blank line can ever appear inside a reply.
 *
 * @module
 */

/** jsoncpp's `StyledWriter::rightMargin_`: single-line arrays must stay under this width. */
const RIGHT_MARGIN = 74;
const INDENT = "   ";
/**
 * Deepest nesting formatted; deeper throws a RangeError (the caller answers an error body).
 * Upstream bodies are checked against a smaller depth before parsing (bodies.ts); this guards
 * every other caller, so the recursion can never overflow the stack.
 */
const MAX_DEPTH = 64;

const encoder = new TextEncoder();

/**
 * Formats `value` as Google's legacy JSON text, with no trailing newline.
 *
 * `undefined` members are skipped (as `JSON.stringify` does); non-finite numbers print as `null`.
 *
 * @example
 * ```ts
 * formatLegacyJson({ status: "OK", html_attributions: [], results: [{ types: ["cafe", "food"] }] });
 * // {
 * //    "html_attributions" : [],
 * //    "results" : [
 * //       {
 * //          "types" : [ "cafe", "food" ]
 * //       }
 * //    ],
 * //    "status" : "OK"
 * // }
 * ```
 */
export function formatLegacyJson(value: unknown): string {
  return write(value, "");
}

/**
 * Quotes a string as JSON with Google's extra escapes (`<` `>` `&` as `\u003c` `\u003e` `\u0026`,
 * and U+2028/U+2029 so no line separator of any kind reaches a client).
 *
 * @example
 * ```ts
 * quoteLegacyString("<b>"); // "\"\\u003cb\\u003e\""
 * ```
 */
export function quoteLegacyString(text: string): string {
  // JSON.stringify already escapes quotes, backslashes, control characters and lone surrogates.
  return JSON.stringify(text).replace(/[<>&\u2028\u2029]/g, escapeChar);
}

function escapeChar(ch: string): string {
  return "\\u" + ch.charCodeAt(0).toString(16).padStart(4, "0");
}

function write(value: unknown, indent: string): string {
  if (value === null || value === undefined) return "null";
  if (indent.length > MAX_DEPTH * INDENT.length) {
    throw new RangeError(`JSON nested deeper than ${MAX_DEPTH}`);
  }
  switch (typeof value) {
    case "string":
      return quoteLegacyString(value);
    case "number":
      return Number.isFinite(value) ? JSON.stringify(value) : "null";
    case "boolean":
      return value ? "true" : "false";
    case "bigint":
      return value.toString();
    case "object":
      return Array.isArray(value)
        ? writeArray(value, indent)
        : writeObject(value as Record<string, unknown>, indent);
    default:
      // Functions and symbols have no JSON form; jsoncpp has none either.
      return "null";
  }
}

function writeObject(obj: Record<string, unknown>, indent: string): string {
  const keys = printableKeys(obj).sort(compareKeys);
  if (keys.length === 0) return "{}";
  const inner = indent + INDENT;
  const members = keys.map((k) => `${inner}${quoteLegacyString(k)} : ${write(obj[k], inner)}`);
  return `{\n${members.join(",\n")}\n${indent}}`;
}

function writeArray(arr: readonly unknown[], indent: string): string {
  if (arr.length === 0) return "[]";
  const inline = inlineArray(arr, indent);
  if (inline !== null) return inline;
  const inner = indent + INDENT;
  const items = arr.map((v) => inner + write(v, inner));
  return `[\n${items.join(",\n")}\n${indent}]`;
}

/** The one-line form `[ a, b ]`, or null when jsoncpp would break the array over lines. */
function inlineArray(arr: readonly unknown[], indent: string): string | null {
  if (arr.length * 3 >= RIGHT_MARGIN) return null;
  for (const v of arr) {
    if (isNonEmptyContainer(v)) return null;
  }
  const parts = arr.map((v) => write(v, indent));
  // '[ ' + ', ' between items + ' ]', measured in UTF-8 bytes as the C++ writer does.
  let width = 4 + (arr.length - 1) * 2;
  for (const p of parts) width += utf8Length(p);
  return width >= RIGHT_MARGIN ? null : `[ ${parts.join(", ")} ]`;
}

function isNonEmptyContainer(v: unknown): boolean {
  if (v === null || typeof v !== "object") return false;
  if (Array.isArray(v)) return v.length > 0;
  return printableKeys(v as Record<string, unknown>).length > 0;
}

/** Members that have a JSON form (undefined and functions are skipped, as JSON.stringify does). */
function printableKeys(obj: Record<string, unknown>): string[] {
  return Object.keys(obj).filter((k) => obj[k] !== undefined && typeof obj[k] !== "function");
}

function utf8Length(s: string): number {
  // Printable-ASCII fast path (escaped JSON text has no control characters left).
  return /^[ -~]*$/.test(s) ? s.length : encoder.encode(s).length;
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
