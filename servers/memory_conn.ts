/**
 * A connection in memory: two `Deno.Conn` ends joined by two byte pipes, for the links between
 * servers of one process (the Herd's). The link code above it is the one that runs over TCP
 * (handshake, SYNC, record stream, receipts, heartbeats, link control): only the transport
 * changes. Over loopback each link write was a `sendto` delivered inline through the kernel and
 * each read a `recvfrom` after an epoll wake-up, ~1.25 + 0.76 syscalls per IAMAT in `start`
 * (BENCHMARKS.md, "In-process links").
 *
 * Socket semantics, kept where the link code relies on them:
 * - bytes, copied: a writer may reuse its buffer once its write resolves;
 * - batching: a write wakes the one pending read with a microtask, and a read takes everything
 *   pending (up to its buffer), so the writes of one turn are one read on the other side;
 * - backpressure: at most `bound` bytes wait unread per direction (a socket's send buffer); a
 *   write beyond it takes what fits and the rest waits, in order, until the reader drains;
 * - ends: `closeWrite` is EOF for the peer once it has read what was sent; `close` is EOF too,
 *   and the peer's later writes fail (`BrokenPipe`), as its pending writes do; our own pending
 *   read fails (`Interrupted`) and later calls on the closed end fail (`BadResource`).
 *
 * @module
 */

import { closeQuietly, writeAll } from "./io.ts";

/** Bytes one direction holds unread at most: a loopback socket's send buffer, roughly. */
export const MEMORY_CONN_BYTES = 256 * 1024;
/** A pipe's first buffer: most link writes are a few hundred bytes; it grows up to the bound. */
const FIRST_BUFFER = 16 * 1024;

interface PendingRead {
  p: Uint8Array;
  resolve: (n: number | null) => void;
  reject: (err: Error) => void;
}

interface PendingWrite {
  /** What is left to put of the write. */
  p: Uint8Array;
  /** The write's whole length, its result once every byte is in. */
  length: number;
  resolve: (n: number) => void;
  reject: (err: Error) => void;
}

/** One direction: bytes written by one end, not yet read by the other. */
class Pipe {
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  readonly bound: number;
  /** The reading end's pending read (one at a time, like a socket's reader). */
  reader: PendingRead | undefined;
  #delivering = false;
  /** Writes waiting for room, in order. */
  #writers: PendingWrite[] = [];
  /** No more bytes will come (the writer closed or shut down its write side). */
  eof = false;
  /** The reader closed: writes fail, what was pending is dropped. */
  readerGone = false;

  constructor(bound: number) {
    this.bound = bound;
    this.#buf = new Uint8Array(Math.min(FIRST_BUFFER, bound));
  }

  get pending(): number {
    return this.#end - this.#start;
  }

  get writersWaiting(): boolean {
    return this.#writers.length > 0;
  }

  /** Takes what fits of `p` (0 when full) and wakes the pending read. */
  put(p: Uint8Array): number {
    const n = Math.min(p.length, this.bound - this.pending);
    if (n <= 0) return 0;
    if (this.#end + n > this.#buf.length) this.#makeRoom(n);
    this.#buf.set(n === p.length ? p : p.subarray(0, n), this.#end);
    this.#end += n;
    this.wake();
    return n;
  }

  /** Queues a write that found no room. */
  wait(w: PendingWrite): void {
    this.#writers.push(w);
  }

  #makeRoom(n: number): void {
    const pending = this.pending;
    let size = this.#buf.length;
    while (size < pending + n) size *= 2;
    size = Math.min(size, this.bound);
    if (size === this.#buf.length) {
      this.#buf.copyWithin(0, this.#start, this.#end);
    } else {
      const grown = new Uint8Array(size);
      grown.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = grown;
    }
    this.#start = 0;
    this.#end = pending;
  }

  /** Copies pending bytes into `p`; then waiting writes take the room that made. */
  take(p: Uint8Array): number {
    const n = Math.min(p.length, this.pending);
    p.set(this.#buf.subarray(this.#start, this.#start + n));
    this.#start += n;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    // The first waiting write stays first until all of it is in: no other write's bytes come
    // between two parts of one write.
    while (this.#writers.length > 0 && this.pending < this.bound) {
      const w = this.#writers[0];
      const put = this.put(w.p);
      if (put < w.p.length) {
        w.p = w.p.subarray(put);
        break;
      }
      this.#writers.shift();
      w.resolve(w.length);
    }
    return n;
  }

  /**
   * Wakes the pending read in a microtask, not now: writes made before it runs are one read.
   */
  wake(): void {
    if (this.reader === undefined || this.#delivering) return;
    this.#delivering = true;
    queueMicrotask(this.#deliver);
  }

  readonly #deliver = () => {
    this.#delivering = false;
    const r = this.reader;
    if (r === undefined) return;
    if (this.pending > 0) {
      this.reader = undefined;
      r.resolve(this.take(r.p));
    } else if (this.eof) {
      this.reader = undefined;
      r.resolve(null);
    }
  };

  /** The writer is done: the reader gets EOF after what is pending; waiting writes fail. */
  endWrites(err: () => Error): void {
    this.eof = true;
    this.#failWriters(err);
    this.wake();
  }

  /** The reader is gone: pending bytes are dropped, writes fail from now on. */
  endReads(err: () => Error): void {
    this.readerGone = true;
    this.#buf = new Uint8Array(0);
    this.#start = this.#end = 0;
    this.#failWriters(err);
  }

  #failWriters(err: () => Error): void {
    const writers = this.#writers;
    this.#writers = [];
    for (const w of writers) w.reject(err());
  }
}

const badResource = () => new Deno.errors.BadResource("Bad resource ID");
const brokenPipe = () => new Deno.errors.BrokenPipe("Broken pipe (in-process connection)");

/**
 * One end of an in-memory connection ({@linkcode memoryConnPair}).
 *
 * @example
 * ```ts
 * const [a, b] = memoryConnPair();
 * await a.write(new TextEncoder().encode("PING\n"));
 * const buf = new Uint8Array(64);
 * const n = await b.read(buf); // 5
 * a.close();
 * await b.read(buf); // null: EOF
 * ```
 */
export class MemoryConn implements Deno.Conn<Deno.NetAddr> {
  readonly localAddr: Deno.NetAddr;
  readonly remoteAddr: Deno.NetAddr;
  /** What we read. */
  #in: Pipe;
  /** What we write (the peer's `#in`). */
  #out: Pipe;
  #closed = false;
  #readable: ReadableStream<Uint8Array<ArrayBuffer>> | undefined;
  #writable: WritableStream<Uint8Array<ArrayBufferLike>> | undefined;

  /** Use {@linkcode memoryConnPair}. */
  constructor(inbound: Pipe, outbound: Pipe, local: Deno.NetAddr, remote: Deno.NetAddr) {
    this.#in = inbound;
    this.#out = outbound;
    this.localAddr = local;
    this.remoteAddr = remote;
  }

  /** True once this end was closed. */
  get closed(): boolean {
    return this.#closed;
  }

  read(p: Uint8Array): Promise<number | null> {
    if (this.#closed) return Promise.reject(badResource());
    const pipe = this.#in;
    if (pipe.reader !== undefined) {
      return Promise.reject(new Deno.errors.Busy("a read is already pending"));
    }
    if (pipe.pending > 0) return Promise.resolve(p.length === 0 ? 0 : pipe.take(p));
    if (pipe.eof) return Promise.resolve(null);
    if (p.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => (pipe.reader = { p, resolve, reject }));
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(badResource());
    const pipe = this.#out;
    if (pipe.eof || pipe.readerGone) return Promise.reject(brokenPipe());
    if (p.length === 0) return Promise.resolve(0);
    // Behind waiting writes, never beside them, and whole (resolved with its full length once
    // every byte is in): a write's bytes stay together and in order, whoever else writes.
    let rest = p;
    if (!pipe.writersWaiting) {
      const n = pipe.put(p);
      if (n === p.length) return Promise.resolve(n);
      rest = p.subarray(n);
    }
    return new Promise((resolve, reject) =>
      pipe.wait({ p: rest, length: p.length, resolve, reject })
    );
  }

  /** EOF for the peer once it has read what we sent. */
  closeWrite(): Promise<void> {
    if (this.#closed) return Promise.reject(badResource());
    if (!this.#out.eof) this.#out.endWrites(brokenPipe);
    return Promise.resolve();
  }

  close(): void {
    if (this.#closed) throw badResource();
    this.#closed = true;
    const reader = this.#in.reader;
    this.#in.reader = undefined;
    reader?.reject(new Deno.errors.Interrupted("operation canceled"));
    this.#in.endReads(brokenPipe);
    if (!this.#out.eof) this.#out.endWrites(badResource);
  }

  /** Nothing to do: the ends hold no runtime resource (the servers' listeners keep the process up). */
  ref(): void {}

  unref(): void {}

  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    return this.#readable ??= new ReadableStream({
      pull: async (controller) => {
        const buf = new Uint8Array(FIRST_BUFFER);
        const n = await this.read(buf);
        if (n === null) controller.close();
        else controller.enqueue(buf.subarray(0, n));
      },
      cancel: () => closeQuietly(this),
    });
  }

  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    return this.#writable ??= new WritableStream({
      write: (chunk) => writeAll(this, chunk),
      close: () => this.closeWrite(),
      abort: () => closeQuietly(this),
    });
  }

  [Symbol.dispose](): void {
    closeQuietly(this);
  }
}

let pairs = 0;

/**
 * Two connected ends. Each reports the other's address as `memory:N` (N numbers the pair), so
 * logs tell an in-process link from a socket. `bound`: bytes each direction holds unread.
 *
 * @example
 * ```ts
 * const [dialled, accepted] = memoryConnPair();
 * await dialled.write(new Uint8Array([1, 2, 3]));
 * await accepted.read(new Uint8Array(8)); // 3
 * ```
 */
export function memoryConnPair(bound = MEMORY_CONN_BYTES): [MemoryConn, MemoryConn] {
  const id = ++pairs;
  const addr: Deno.NetAddr = { transport: "tcp", hostname: "memory", port: id };
  const ab = new Pipe(bound);
  const ba = new Pipe(bound);
  return [new MemoryConn(ba, ab, addr, addr), new MemoryConn(ab, ba, addr, addr)];
}
