/**
 * Bounds the request heads our HTTP ports pass on (servers/http_front.ts): `Deno.serve` (hyper)
 * answers a head past its own limits with a bare `400` and no body (a 100,000-byte header), or
 * closes the connection with no answer at all (~400 KB), and has no option to change either
 * (hyper's limits are fixed in Deno: denoland/deno#21047). The front sees the bytes first: it
 * holds each request head until it is complete and refuses one over {@linkcode MAX_HEAD_BYTES}
 * or {@linkcode MAX_HEAD_LINES} with our own `431` JSON error, before hyper sees any of it.
 *
 * Only heads are held; a body (`content-length`) passes through as it comes. A head that asks
 * for anything this does not follow (`transfer-encoding`, an upgrade, an unreadable length, the
 * HTTP/2 preface) turns the guard off for the rest of that connection: hyper's own limits apply
 * there.
 *
 * @module
 */

/** The largest request head passed on (bytes, request line and CRLFs included). */
export const MAX_HEAD_BYTES = 16 * 1024;
/**
 * The most lines a request head may have, request line included: 99 fields. Stricter than hyper
 * (Deno 2.9 serves 128 fields and answers 129 with a bare 400); a browser sends about 20.
 */
export const MAX_HEAD_LINES = 100;

const LF = 10;
const CR = 13;
const latin1 = new TextDecoder("latin1");

/**
 * Why a head was refused, for the JSON error: `431` for a head over the bounds, `400` for bytes
 * no HTTP/1 request starts with (a TLS ClientHello above all).
 */
export type HeadRefusal = { refused: string; status: 400 | 431 };

/**
 * True for a byte an HTTP/1 request may start with: a method's token character (RFC 9110 5.6.2),
 * or CR/LF (blank lines may come before the request line, RFC 9112 2.2).
 */
function startsRequest(b: number): boolean {
  return (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39) ||
    b === CR || b === LF || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(b));
}

/**
 * One connection's inbound bytes, head by head.
 *
 * @example
 * ```ts
 * const guard = new HeadGuard();
 * guard.feed(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n")); // [] (held)
 * guard.feed(new TextEncoder().encode("\r\n")); // [the whole head]
 * ```
 */
export class HeadGuard {
  /**
   * The head being gathered (bytes held back), in one buffer grown by doubling up to the bound:
   * a head trickled a byte per read would otherwise hold an array object per byte (~13 KB of
   * heap each), not its own size.
   */
  #held = new Uint8Array(0);
  #heldBytes = 0;
  /** Lines of the current head seen so far. */
  #lines = 0;
  /** Body bytes still to pass through before the next head. */
  #body = 0;
  /** The guard is off for this connection (see the module doc). */
  #off = false;
  /** The last two bytes seen in the head (a head's end may straddle chunks). */
  #tail = 0;

  constructor(readonly maxBytes = MAX_HEAD_BYTES, readonly maxLines = MAX_HEAD_LINES) {}

  /** Takes bytes from the client; returns what may go on now, or why the head is refused. */
  feed(chunk: Uint8Array): Uint8Array[] | HeadRefusal {
    const out: Uint8Array[] = [];
    let rest = chunk;
    while (rest.length > 0) {
      if (this.#off) {
        out.push(rest);
        break;
      }
      if (this.#body > 0) {
        const n = Math.min(this.#body, rest.length);
        out.push(rest.subarray(0, n));
        this.#body -= n;
        rest = rest.subarray(n);
        continue;
      }
      // In a head: find its end (an empty line: LF, optional CR, LF).
      let end = -1;
      // A head that cannot be a request is refused at its first byte: a TLS ClientHello
      // (`https://` to this port) holds no empty line, and was held as an unfinished head until
      // the stall timeout (30 s), answered by nothing (adv15).
      if (this.#heldBytes === 0 && !startsRequest(rest[0])) {
        const hex = rest[0].toString(16).padStart(2, "0");
        return {
          refused: `not an HTTP/1 request (first byte 0x${hex}${
            rest[0] === 0x16 ? ": TLS? this port speaks plain HTTP" : ""
          })`,
          status: 400,
        };
      }
      for (let i = 0; i < rest.length; i++) {
        const b = rest[i];
        if (b === LF) {
          if ((this.#tail & 0xff) === LF || (this.#tail === ((LF << 8) | CR))) {
            end = i + 1;
            break;
          }
          this.#lines++;
        }
        this.#tail = ((this.#tail << 8) | b) & 0xffff;
        if (this.#heldBytes + i + 1 > this.maxBytes) {
          return { refused: `request head larger than ${this.maxBytes} bytes`, status: 431 };
        }
        if (this.#lines > this.maxLines) {
          return { refused: `request head of more than ${this.maxLines} lines`, status: 431 };
        }
      }
      if (end === -1) {
        // Held: copied, as the caller reuses its read buffer.
        this.#hold(rest);
        break;
      }
      const head = this.#take(rest.subarray(0, end));
      out.push(head);
      this.#next(head);
      rest = rest.subarray(end);
    }
    return out;
  }

  /** Appends `part` to the held bytes (never past the byte bound: `feed` refuses first). */
  #hold(part: Uint8Array): void {
    const need = this.#heldBytes + part.length;
    if (need > this.#held.length) {
      const grown = new Uint8Array(
        Math.min(this.maxBytes, Math.max(need, 256, this.#held.length * 2)),
      );
      grown.set(this.#held.subarray(0, this.#heldBytes));
      this.#held = grown;
    }
    this.#held.set(part, this.#heldBytes);
    this.#heldBytes = need;
  }

  /** The held bytes plus `last`, as one array; the hold is emptied (and its buffer let go). */
  #take(last: Uint8Array): Uint8Array {
    const head = new Uint8Array(this.#heldBytes + last.length);
    head.set(this.#held.subarray(0, this.#heldBytes));
    head.set(last, this.#heldBytes);
    this.#held = new Uint8Array(0);
    this.#heldBytes = 0;
    this.#lines = 0;
    this.#tail = 0;
    return head;
  }

  /** Reads what follows a complete head: a body to pass through, or the guard off. */
  #next(head: Uint8Array): void {
    const text = latin1.decode(head);
    // HTTP/2 with prior knowledge (h2c, RFC 9113 3.3): the preface's first part looks like a
    // head; binary frames follow, which hold no empty line to end a "head" (held, they hung the
    // connection). hyper's HTTP/2 limits apply there.
    if (text.startsWith("PRI * HTTP/2.0\r\n")) {
      this.#off = true;
      return;
    }
    // Blank lines before a request line (allowed by RFC 9112) are a "head" of their own.
    if (/^[\r\n]*$/.test(text)) return;
    const fields = text.split(/\r?\n/).slice(1);
    const lengths: string[] = [];
    for (const f of fields) {
      // By index, not a regex: `:[ \t]*(.*?)[ \t]*$` backtracked on a value of spaces between
      // two letters (16 KB: ~0.3 s of the JS thread per head, and heads may be pipelined).
      const colon = f.indexOf(":");
      if (colon === -1) continue;
      const name = f.slice(0, colon).toLowerCase();
      if (name === "content-length") lengths.push(trimBlanks(f.slice(colon + 1)));
      else if (name === "transfer-encoding" || name === "upgrade") this.#off = true;
    }
    if (this.#off) return;
    if (lengths.length === 0) return;
    if (lengths.length > 1 || !/^\d{1,15}$/.test(lengths[0])) {
      // hyper refuses such a request itself; nothing after it is a head we could find.
      this.#off = true;
      return;
    }
    this.#body = Number(lengths[0]);
  }
}

/** `text` without its leading and trailing spaces and tabs (a field value's OWS, RFC 9110). */
function trimBlanks(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && (text[start] === " " || text[start] === "\t")) start++;
  while (end > start && (text[end - 1] === " " || text[end - 1] === "\t")) end--;
  return text.slice(start, end);
}

/**
 * The `431` a refused head gets: a JSON error like every other error of our HTTP ports, and the
 * connection closed after it.
 *
 * @example
 * ```ts
 * new TextDecoder().decode(headTooLarge("request head larger than 16384 bytes")).split("\r\n")[0];
 * // "HTTP/1.1 431 Request Header Fields Too Large"
 * ```
 */
export function headTooLarge(message: string, status: 400 | 431 = 431): Uint8Array {
  const body = JSON.stringify({ error: message });
  const reason = status === 431 ? "Request Header Fields Too Large" : "Bad Request";
  return new TextEncoder().encode(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\n` +
      `content-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
  );
}
