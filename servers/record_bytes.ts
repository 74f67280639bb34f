/**
 * A record's AT fields as bytes, encoded once per process. In `start` the five servers hold one
 * body per record (servers/record_table.ts), and each wrote the same ~70 bytes again: in its log's
 * `ACCEPT` line and in its record log's entry. Here the bytes of a body's
 * ` <origin> <diff> <client> <location> <time>` (its "tail": an AT line is `AT` and the tail, a
 * record log entry `R <seq>` and the tail) are kept for the bodies seen last, by the body's client
 * slot, so every server after the first copies them with one native copy.
 *
 * The bytes sit in one ring: a typed array of its own over 64 bytes is a native allocation, which
 * cost more than the encoding it saved. A tail is viewed only when asked for, never kept: a view
 * kept per tail lived until its slot was reused, long enough to be promoted, and ~100 B of old
 * space garbage per record was ~100 MB over a million (BENCHMARKS.md, "Memory of 2026-11-27
 * (third pass)").
 *
 * @module
 */

import type { AtFields } from "./record.ts";
import { recordFields } from "./store.ts";
import { SharedRecord } from "./record_table.ts";

/** Tails longer than this are not kept (a long location is rare; each user encodes it). */
const TAIL_MAX = 1024;
/** Tails kept, direct-mapped by the body's client slot (a commit interval's records fit). */
export const TAIL_SLOTS = 4096;
/** Bytes of the ring the kept tails' bytes are in (the oldest are overwritten). */
const TAIL_RING = 1 << 20;

/**
 * The tails of the record bodies seen last.
 *
 * @example
 * ```ts
 * import { RecordStore } from "./store.ts";
 * import { RecordTable } from "./record_table.ts";
 *
 * const table = new RecordTable();
 * const a = new RecordStore(table), b = new RecordStore(table);
 * const f = { origin: "Hill", diff: "+0.1", client: "k", location: "+1+2", time: "5" };
 * const tails = new RecordBytes();
 * const i = tails.find(a.offer(f, -1).record!); // encoded
 * tails.find(b.offer(f, -1).record!) === i; // true: the same body, its bytes reused
 * new TextDecoder().decode(tails.bytes(i)); // " Hill +0.1 k +1+2 5"
 * ```
 */
export class RecordBytes {
  #bodies: (SharedRecord | undefined)[] = new Array(TAIL_SLOTS).fill(undefined);
  /** Per kept tail: where its bytes start (a count of ring bytes ever written). */
  #at = new Float64Array(TAIL_SLOTS);
  /** Per kept tail: its length in bytes (at most TAIL_MAX). */
  #length = new Uint16Array(TAIL_SLOTS);
  /** 1 when every byte of the tail is printable ASCII but backslash (a log line keeps it as is). */
  #plain = new Uint8Array(TAIL_SLOTS);
  /** The bytes of the kept tails: tail `i` is `length(i)` bytes from `start(i)`. */
  readonly ring: Uint8Array = new Uint8Array(TAIL_RING);
  #written = 0;
  /** The tail being made has a char to escape. */
  #escapes = false;
  /** Tails reused, and tails made, since made (for tests and profiles). */
  hits = 0;
  made = 0;

  /**
   * Where `r`'s tail is kept, made at the first asking: its slot, or -1 for a record that is not
   * a shared body (or too long to keep). A slot holds its tail until another body takes it.
   */
  find(r: AtFields): number {
    const body = recordFields(r);
    if (!(body instanceof SharedRecord)) return -1;
    const i = body.slot & (TAIL_SLOTS - 1);
    // Kept and not overwritten since: the ring is far larger than one tail.
    if (this.#bodies[i] === body && this.#written - this.#at[i] <= TAIL_RING) {
      this.hits++;
      return i;
    }
    const { origin, diff, client, location, time } = body;
    const n = 5 + origin.length + diff.length + client.length + location.length + time.length;
    if (n > TAIL_MAX) return -1;
    // A tail never wraps: it starts over at the ring's beginning when it would not fit.
    let at = this.#written % TAIL_RING;
    if (at + n > TAIL_RING) {
      this.#written += TAIL_RING - at;
      at = 0;
    }
    this.made++;
    this.#bodies[i] = body;
    this.#at[i] = this.#written;
    this.#written += n;
    const b = this.ring;
    const start = at;
    this.#escapes = false;
    at = this.#put(b, at, origin);
    at = this.#put(b, at, diff);
    at = this.#put(b, at, client);
    at = this.#put(b, at, location);
    at = this.#put(b, at, time);
    this.#plain[i] = this.#escapes ? 0 : 1;
    this.#length[i] = at - start;
    return i;
  }

  /**
   * A space and `s` (one byte per char) into `b` at `at`; returns where it ended. Notes a char a
   * log line would escape (a char above 0xff among them: its byte here is not the char).
   */
  #put(b: Uint8Array, at: number, s: string): number {
    b[at++] = 32;
    for (let k = 0; k < s.length; k++) {
      const c = s.charCodeAt(k);
      if (c < 0x20 || c > 0x7e || c === 0x5c) this.#escapes = true;
      b[at++] = c;
    }
    return at;
  }

  /** Where the tail kept at `i` starts in {@linkcode ring} (valid until the next `find`). */
  start(i: number): number {
    return this.#at[i] % TAIL_RING;
  }

  /** The length in bytes of the tail kept at `i`. */
  length(i: number): number {
    return this.#length[i];
  }

  /** Which tail is kept at `i`: a number no other tail made by this object had. */
  stamp(i: number): number {
    return this.#at[i];
  }

  /** Copies the tail kept at `i` into `dst` at `at` (room checked by the caller); returns its end. */
  copyTo(i: number, dst: Uint8Array, at: number): number {
    const ring = this.ring;
    const start = this.#at[i] % TAIL_RING;
    const end = start + this.#length[i];
    // A byte loop: a subarray view per copy is an allocation, more than ~70 bytes cost to copy.
    for (let k = start; k < end; k++) dst[at++] = ring[k];
    return at;
  }

  /** The bytes of the tail kept at `i`, a view of the ring (valid until the next `find`). */
  bytes(i: number): Uint8Array {
    const start = this.start(i);
    return this.ring.subarray(start, start + this.#length[i]);
  }

  /** Whether the tail kept at `i` is printable ASCII without a backslash (chars, not bytes). */
  plain(i: number): boolean {
    return this.#plain[i] === 1;
  }
}

/** The tails of this process: its record logs and log files share them. */
export const processRecordBytes: RecordBytes = new RecordBytes();
