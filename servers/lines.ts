/**
 * Bytes to lines: splits a TCP byte stream on LF without ever buffering more than the line limit.
 * A line over the limit is discarded as it streams; only a prefix is kept, for the `?` reply.
 *
 * Lines come out as binary strings (one char per byte) so the protocol can echo them exactly.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { MAX_CLIENT_LINE } from "./limits.ts";

/** Default longest line, in bytes, LF (and a CR before it) excluded: the client line limit (limits.ts). */
export const DEFAULT_LINE_LIMIT = MAX_CLIENT_LINE;

/** How much of an overlong line is kept for the `?` reply. */
export const OVERLONG_PREFIX = 1024;

/** One line out of the splitter. */
export interface SplitLine {
  /**
   * The line without its LF, or the kept prefix of an overlong line: up to OVERLONG_PREFIX bytes
   * from its first byte that is not whitespace ("" for an overlong blank line).
   */
  text: string;
  /** True when the line was longer than the limit and only its prefix is in `text`. */
  overlong: boolean;
  /**
   * Set on a line {@linkcode LineSplitter.push} left undecoded (its `raw` tag): the line is
   * `[start, end)` of the chunk pushed (valid until the caller reuses it), and `text` is "".
   */
  start?: number;
  /** With `start`: where the line ends (its LF) in the chunk. */
  end?: number;
}

/**
 * Decodes bytes as a binary string (byte i becomes char code i).
 *
 * @example
 * ```ts
 * bytesToBinary(new Uint8Array([0x41, 0xff])); // "A\xff"
 * ```
 */
export function bytesToBinary(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
}

/** Fields this short are decoded by {@linkcode binaryAt} in JavaScript, longer ones natively. */
const SHORT_FIELD = 16;
/** One scratch array of char codes per short length (packed, reused: no allocation a field). */
const CODES: number[][] = Array.from({ length: SHORT_FIELD + 1 }, (_, n) => new Array(n).fill(0));

/**
 * `bytes[start, end)` as a binary string (a flat one of its own). A link decodes a client ID for
 * every `R` line and a time difference for every new record (~11 fields per IAMAT in the seed
 * herd): up to 16 bytes, `String.fromCharCode` over a reused array of codes costs about half of
 * node:buffer's `toString("latin1")`, an op call into the runtime (measured: 48 against 108 ns
 * at 8 bytes, 73 against 117 at 16, even at ~24; longer fields go to `toString`).
 *
 * @example
 * ```ts
 * import { Buffer } from "node:buffer";
 *
 * binaryAt(Buffer.from([0x52, 0x20, 0x41, 0xff]), 2, 4); // "A\xff"
 * ```
 */
export function binaryAt(bytes: Buffer, start: number, end: number): string {
  const n = end - start;
  if (n > SHORT_FIELD || n < 0) return bytes.toString("latin1", start, end);
  const codes = CODES[n];
  for (let i = 0; i < n; i++) codes[i] = bytes[start + i];
  return String.fromCharCode.apply(null, codes);
}

/**
 * Encodes a binary string back to its bytes (the inverse of {@linkcode bytesToBinary}).
 *
 * @example
 * ```ts
 * binaryToBytes("A\xff"); // Uint8Array [0x41, 0xff]
 * ```
 */
export function binaryToBytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  binaryInto(text, out);
  return out;
}

/**
 * Writes a binary string's bytes into `out` (which must hold `text.length` bytes); returns the
 * filled view. Lets a connection reuse one buffer for every reply instead of allocating one each.
 *
 * @example
 * ```ts
 * const buf = new Uint8Array(64);
 * binaryInto("AT ...\n", buf); // buf.subarray(0, 7)
 * ```
 */
export function binaryInto(text: string, out: Uint8Array): Uint8Array {
  const n = text.length;
  // Long text (log batches, peer batches) goes through the native encoder in one pass: it stops
  // early when a char needs two bytes, and only then do we fall back to the loop. Short replies
  // are cheaper with the plain loop than with any encoder call (Buffer.from(text, "latin1") is a
  // JS loop in Deno's node compat, 3x slower than this).
  let from = 0;
  if (n >= 512) {
    const view = out.subarray(0, n);
    const { read, written } = asciiEncoder.encodeInto(text, view);
    if (read === n && written === n) return view;
    // Some char took two bytes: everything before the first non-ASCII char is right.
    from = text.search(NON_ASCII);
  }
  for (let i = from; i < n; i++) out[i] = text.charCodeAt(i);
  return out.subarray(0, n);
}

/**
 * Whether `bytes[start, end)` are the bytes of the binary string `text` (one byte a char), without
 * decoding them.
 *
 * @example
 * ```ts
 * binaryEquals(new Uint8Array([0x52, 0x20, 0x41]), 2, 3, "A"); // true
 * ```
 */
export function binaryEquals(bytes: Uint8Array, start: number, end: number, text: string): boolean {
  if (end - start !== text.length) return false;
  for (let i = start; i < end; i++) if (bytes[i] !== text.charCodeAt(i - start)) return false;
  return true;
}

const asciiEncoder = new TextEncoder();
const CR = 13;
/** Bytes a splitter's line buffer starts with, and keeps between lines (see `#reset`). */
const MIN_BUFFER = 256;
const NON_ASCII = /[^\x00-\x7f]/;

/**
 * Incremental LF splitter with a line limit.
 *
 * @example
 * ```ts
 * const s = new LineSplitter(16);
 * s.push(new TextEncoder().encode("IAMAT a\nWHAT")); // [{ text: "IAMAT a", overlong: false }]
 * s.pending; // 4 (bytes of "WHAT" waiting for their LF)
 * s.flush(); // { text: "WHAT", overlong: false }
 * ```
 */
export class LineSplitter {
  #limit: number;
  /**
   * The unterminated line's bytes, `[0, #size)`: one buffer that grows by doubling (to the
   * limit), not a copy per read. A line that came a byte a read kept an object per byte, ~460
   * bytes of memory each: a 64 KiB partial line cost ~30 MiB.
   */
  #buf: Uint8Array | undefined;
  #size = 0;
  /** Set while discarding an overlong line: its kept prefix. */
  #overlongPrefix: string | undefined;

  constructor(limit = DEFAULT_LINE_LIMIT) {
    this.#limit = limit;
  }

  /** Raises the line limit (a client connection that became a peer link reads longer lines). */
  raiseLimit(limit: number): void {
    if (limit > this.#limit) this.#limit = limit;
  }

  /** Bytes of the current unterminated line held (0 while discarding an overlong one). */
  get pending(): number {
    return this.#size;
  }

  /** True while an overlong line is being discarded (its LF not yet seen). */
  get discarding(): boolean {
    return this.#overlongPrefix !== undefined;
  }

  /**
   * Feeds bytes; returns the lines they complete. The chunk may be reused by the caller after.
   * With `raw` (a byte), a whole line of this chunk that starts with it and a space comes out
   * undecoded (`start`, `end`): a link reads most of its `R` lines from the bytes.
   */
  push(chunk: Uint8Array, raw?: number): SplitLine[] {
    const out: SplitLine[] = [];
    // One Buffer view of the read for all its whole lines, not a subarray and a Buffer per line
    // (a link's read carries a batch of them): 59 ns a line instead of 127.
    let view: Buffer | undefined;
    let start = 0;
    while (start < chunk.length) {
      const lf = chunk.indexOf(10, start);
      const end = lf === -1 ? chunk.length : lf;
      if (
        lf !== -1 && this.#size === 0 && this.#overlongPrefix === undefined &&
        (end - start <= this.#limit || (end - start === this.#limit + 1 && chunk[end - 1] === CR))
      ) {
        // Fast path: a whole line inside this chunk needs no copy.
        if (raw !== undefined && chunk[start] === raw && chunk[start + 1] === 0x20) {
          out.push({ text: "", overlong: false, start, end });
          start = lf + 1;
          continue;
        }
        view ??= Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        out.push({ text: view.toString("latin1", start, end), overlong: false });
        start = lf + 1;
        continue;
      }
      this.#take(chunk.subarray(start, end));
      if (lf === -1) break;
      out.push(this.#finish());
      start = lf + 1;
    }
    return out;
  }

  /** Ends the current partial line (EOF or the partial-line timer); undefined when none. */
  flush(): SplitLine | undefined {
    if (this.#size === 0 && this.#overlongPrefix === undefined) return undefined;
    return this.#finish();
  }

  #take(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.#overlongPrefix !== undefined) {
      // Discarding as it streams; only the echo prefix is topped up.
      this.#overlongPrefix = keepPrefix(this.#overlongPrefix, bytes);
      return;
    }
    // One byte over the limit is held: the line's CR, if its LF comes next (#finish checks).
    if (this.#size + bytes.length > this.#limit + 1) {
      this.#overlongPrefix = keepPrefix(keepPrefix("", this.#held()), bytes);
      this.#reset();
      return;
    }
    // Copy: the caller reuses its read buffer.
    const need = this.#size + bytes.length;
    if (this.#buf === undefined || this.#buf.length < need) {
      const grown = new Uint8Array(
        Math.min(this.#limit + 1, Math.max(need, 2 * (this.#buf?.length ?? 0), MIN_BUFFER)),
      );
      if (this.#size > 0) grown.set(this.#buf!.subarray(0, this.#size));
      this.#buf = grown;
    }
    this.#buf.set(bytes, this.#size);
    this.#size = need;
  }

  /** The unterminated line's bytes (a view of the buffer: decode it before the next push). */
  #held(): Uint8Array {
    return this.#buf === undefined ? new Uint8Array(0) : this.#buf.subarray(0, this.#size);
  }

  /** Empties the line; a buffer grown past a small one is let go (idle connections hold none). */
  #reset(): void {
    this.#size = 0;
    if (this.#buf !== undefined && this.#buf.length > MIN_BUFFER) this.#buf = undefined;
  }

  #finish(): SplitLine {
    if (this.#overlongPrefix !== undefined) {
      const text = this.#overlongPrefix;
      this.#overlongPrefix = undefined;
      return { text, overlong: true };
    }
    if (this.#size === 0) return { text: "", overlong: false };
    const all = this.#held();
    // Decoded (copied) before the buffer is reused. A CR before the LF is whitespace, not part of
    // the line's length: only it may pass the limit.
    const line = all.length > this.#limit && all[all.length - 1] !== CR
      ? { text: keepPrefix("", all), overlong: true }
      : { text: bytesToBinary(all), overlong: false };
    this.#reset();
    return line;
  }
}

/**
 * Tops up an overlong line's echo prefix (`kept`) with `bytes`, to OVERLONG_PREFIX bytes. The
 * prefix starts at the line's first byte that is not protocol whitespace: the `?` reply echoes
 * the line trimmed, so 1 KiB of leading blanks used to leave nothing of the command in it; and
 * an overlong line of whitespace only keeps nothing, so it is a blank line (no reply).
 */
function keepPrefix(kept: string, bytes: Uint8Array): string {
  let from = 0;
  if (kept === "") {
    while (from < bytes.length && isProtocolSpace(bytes[from])) from++;
  }
  const room = OVERLONG_PREFIX - kept.length;
  if (room <= 0 || from === bytes.length) return kept;
  return kept + bytesToBinary(bytes.subarray(from, from + room));
}

/** Space, tab, CR, LF, VT, FF: the protocol's whitespace. */
function isProtocolSpace(b: number): boolean {
  return b === 32 || (b >= 9 && b <= 13);
}

const utf8Encoder = new TextEncoder();

/**
 * Encodes real (Unicode) text as the binary string of its UTF-8 bytes, so it can join wire text.
 *
 * @example
 * ```ts
 * utf8ToBinary("é"); // "\xc3\xa9"
 * ```
 */
export function utf8ToBinary(text: string): string {
  // ASCII needs no work, and is what almost every reply is.
  if (!/[^\x00-\x7f]/.test(text)) return text;
  return bytesToBinary(utf8Encoder.encode(text));
}
