/**
 * Where a JSON text first goes wrong, said without quoting it. V8's `JSON.parse` message for an
 * unexpected token quotes the bytes around it: in a config, that can be a secret whose quotes
 * were forgotten. No imports: the config's reader runs before the rest of the program loads.
 *
 * @module
 */

/** The first place no JSON text could go on from, 1-based, and whether the text ended there. */
export interface JsonFault {
  line: number;
  column: number;
  /** The text ended where more was needed (else a character that cannot be there). */
  end: boolean;
}

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);
const ESCAPES = new Set([...'"\\/bfnrt'].map((c) => c.charCodeAt(0)));
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isHex = (c: number) => isDigit(c) || (c | 0x20) >= 0x61 && (c | 0x20) <= 0x66;

/**
 * The first fault of `text` as JSON (RFC 8259), or undefined when it is valid. Iterative, so a
 * deeply nested text cannot overflow the stack.
 *
 * @example
 * ```ts
 * jsonFault('{"a": b}'); // { line: 1, column: 7, end: false }
 * jsonFault('{"a": 1}'); // undefined
 * ```
 */
export function jsonFault(text: string): JsonFault | undefined {
  const at = scan(text);
  if (at === -1) return undefined;
  let line = 1;
  let start = 0;
  for (let i = 0; i < at && i < text.length; i++) {
    if (text.charCodeAt(i) === 0x0a) {
      line++;
      start = i + 1;
    }
  }
  return { line, column: at - start + 1, end: at >= text.length };
}

/** The index of the first fault, or -1. */
function scan(text: string): number {
  const n = text.length;
  let i = 0;
  const code = () => (i < n ? text.charCodeAt(i) : -1);
  const ws = () => {
    while (i < n && WS.has(text.charCodeAt(i))) i++;
  };
  /** Containers open: `{` or `[`. */
  const stack: number[] = [];
  /** Reads one string at i (at its quote); false on a fault (i at it). */
  const string = (): boolean => {
    i++;
    for (;;) {
      const c = code();
      if (c === -1 || c < 0x20) return false;
      if (c === 0x22) {
        i++;
        return true;
      }
      if (c === 0x5c) {
        i++;
        const e = code();
        if (e === 0x75) {
          i++;
          for (let k = 0; k < 4; k++, i++) if (!isHex(code())) return false;
        } else if (ESCAPES.has(e)) i++;
        else return false;
      } else i++;
    }
  };
  const number = (): boolean => {
    if (code() === 0x2d) i++;
    if (code() === 0x30) i++;
    else if (isDigit(code())) { while (isDigit(code())) i++; }
    else return false;
    if (code() === 0x2e) {
      i++;
      if (!isDigit(code())) return false;
      while (isDigit(code())) i++;
    }
    if ((code() | 0x20) === 0x65) {
      i++;
      if (code() === 0x2b || code() === 0x2d) i++;
      if (!isDigit(code())) return false;
      while (isDigit(code())) i++;
    }
    return true;
  };
  const literal = (word: string): boolean => {
    for (let k = 0; k < word.length; k++, i++) {
      if (code() !== word.charCodeAt(k)) return false;
    }
    return true;
  };
  /** Whether the last value read opened a container (so it may close at once). */
  let opened = false;
  /** A value at i; a container only opens (its contents come in the loop). */
  const value = (): boolean => {
    const c = code();
    opened = c === 0x7b || c === 0x5b;
    if (opened) {
      stack.push(c);
      i++;
      return true;
    }
    if (c === 0x22) return string();
    if (c === 0x2d || isDigit(c)) return number();
    if (c === 0x74) return literal("true");
    if (c === 0x66) return literal("false");
    if (c === 0x6e) return literal("null");
    return false;
  };
  /** A member's key and colon, at i. */
  const key = (): boolean => {
    if (code() !== 0x22 || !string()) return false;
    ws();
    if (code() !== 0x3a) return false;
    i++;
    ws();
    return true;
  };

  ws();
  if (!value()) return i;
  for (;;) {
    ws();
    const top = stack.at(-1);
    if (top === undefined) return i === n ? -1 : i;
    if (code() === (top === 0x7b ? 0x7d : 0x5d)) {
      stack.pop();
      i++;
      opened = false;
      continue;
    }
    if (!opened) {
      if (code() !== 0x2c) return i;
      i++;
      ws();
    }
    if (top === 0x7b && !key()) return i;
    if (!value()) return i;
  }
}
