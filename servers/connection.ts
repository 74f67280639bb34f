/**
 * One client connection: reads bytes, splits lines, hands each line to the server, and writes
 * the replies back in command order, even when a later command (an IAMAT) finishes before an
 * earlier one (a WHATSAT waiting on Places).
 *
 * Framing rules from docs/protocol.md live here: half-close (answer everything, then close), the
 * partial-line timer, whole replies per write, the line limit, and backpressure (a client that
 * pipelines without reading stops being read once too many replies are pending).
 *
 * @module
 */

import { FairShare, TurnQueue } from "./fair.ts";
import { binaryInto, LineSplitter, type SplitLine } from "./lines.ts";
import { formatInvalid } from "./protocol.ts";
import { HANDSHAKE_PREFIX } from "./wire.ts";
import { HANDSHAKE_LINE_LIMIT, HANDSHAKE_TIMEOUT_MS } from "./handshake.ts";
import { outputBudget, type OutputHolder } from "./output_budget.ts";
import { inputBudget } from "./connection_input.ts";
import { arrivedNs, closeQuietly } from "./io.ts";
import { errText, oneLine } from "./text.ts";
import { hostPort } from "./http_host.ts";
import { silenceTimer } from "./timeout.ts";
import { nowNs } from "./clock.ts";

/** Tunables for client connections. */
export interface ConnectionOptions {
  /** Longest line in bytes; longer ones get `? <prefix>`. */
  lineLimit: number;
  /** A partial line unchanged this long is taken as a command; 0 turns it off. */
  partialLineMs: number;
  /** Close a connection with no input and nothing pending for this long; 0 turns it off. */
  idleTimeoutMs: number;
  /** Stop reading while this many replies (or 1 MiB of output) wait to be written. */
  maxPendingReplies: number;
}

/** What a connection needs from its server. */
export interface LineHandler {
  /** The reply to one line (a binary string), or null for no reply (blank line). */
  handleLine(line: SplitLine, conn: ClientConnection): string | Promise<string> | null;
  /**
   * Called with the first line when it starts with `HERD2 `: a peer or observer handshake.
   * Resolves true when the handler took the socket over (this connection then stops).
   */
  handshake(line: string, conn: ClientConnection, rest: SplitLine[]): Promise<boolean>;
}

interface Slot {
  text: string | undefined;
}

const MAX_PENDING_BYTES = 1024 * 1024;
/**
 * Asynchronous commands (WHATSATs) started ahead per connection. Replies go out in order anyway,
 * so starting more gains nothing; the cap keeps one pipelining client from monopolising the
 * event loop (each offline search runs to completion) and bounds the WHATSAT replies that can
 * be ready at once (each up to a few KiB) under the output cap.
 */
const MAX_IN_FLIGHT = 32;
const READ_SIZE = 16 * 1024;
const MAX_WRITE_BUF = 64 * 1024;
/**
 * Commands of one connection handled in one go (ms) before it queues for another turn, when it
 * has more pipelined. The queue is shared by every client connection of the process.
 */
const SLICE_MS = 5;
/**
 * Asynchronous commands started per turn while other connections wait for theirs. An offline
 * WHATSAT does its search (up to ~5 ms) in a microtask after the slice, so time alone cannot
 * bound a turn: 32 of them made every turn 160 ms.
 */
const TURN_IN_FLIGHT = 2;
const turns = new TurnQueue();
/** Connections working through a pipelined read right now (process-wide). */
let pipelining = 0;
/** A timer this late (ms) means our event loop was stalled: input may be waiting unread. */
const LATE_TIMER_MS = 100;

/**
 * A client connection. `run()` resolves when the connection has ended.
 *
 * @example
 * ```ts
 * declare const listener: Deno.TcpListener;
 * declare const handler: LineHandler; // what the lines are for: a HerdServer
 * declare const options: ConnectionOptions;
 *
 * const conn = await listener.accept();
 * const client = new ClientConnection(conn, 1, handler, options);
 * await client.run();
 * ```
 */
export class ClientConnection implements OutputHolder {
  readonly conn: Deno.Conn;
  readonly id: number;
  readonly remote: string;
  readonly splitter: LineSplitter;
  #handler: LineHandler;
  #opts: ConnectionOptions;
  #slots: Slot[] = [];
  #writeBuf = new Uint8Array(256);
  #inFlight = 0;
  #out: string[] = [];
  #outBytes = 0;
  /** Bytes of the write in flight (they count against the process's output budget too). */
  #writeBytes = 0;
  #progressAt = performance.now();
  #writing = false;
  #closed = false;
  #handedOver = false;
  #partialTimer: { clear(): void } | undefined;
  #idleTimer: { clear(): void } | undefined;
  /** True while waiting in `read` for the client: only then is its silence its own. */
  #reading = false;
  /** When the current (or last) wait in `read` began. */
  #readingSince = performance.now();
  /** The server clock (ns) when the last bytes arrived: the receive time of the lines they end. */
  #arrivedNs = nowNs();
  #fair = new FairShare();
  #onDrain: (() => void) | undefined;
  #onSettled: (() => void) | undefined;
  #firstLine = true;
  /** Admitted for a handshake only (see run()): why it closes when it is not one. */
  #handshakeOnly: string | undefined;
  #sliceStart = 0;
  /** Bytes of the unfinished line counted against the process's input budget. */
  #inputHeld = 0;
  /** Why the connection ended, for the disconnect event. */
  reason = "closed by client";

  constructor(conn: Deno.Conn, id: number, handler: LineHandler, opts: ConnectionOptions) {
    this.conn = conn;
    this.id = id;
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.remote = hostPort(addr.hostname, addr.port);
    this.#handler = handler;
    this.#opts = opts;
    this.splitter = new LineSplitter(opts.lineLimit);
  }

  /** Reply bytes buffered here: queued plus being written (for the process's output budget). */
  get held(): number {
    return this.#outBytes + this.#writeBytes;
  }

  /** When the last write finished (or this connection opened). */
  get progressAt(): number {
    return this.#progressAt;
  }

  /** The output budget has room again: resume reading if only it held us back. */
  wake(): void {
    this.#wake();
  }

  /** Closes a connection the output budget gave up on. */
  cut(reason: string): void {
    this.close(reason);
  }

  /** True once the socket was handed to a peer link or an observer. */
  get handedOver(): boolean {
    return this.#handedOver;
  }

  /**
   * Reads until EOF or close; answers everything pending before closing. `initial`: bytes the server already read (deciding
   * whether to admit us), taken as the first read. `handshakeOnly`: the close reason of a
   * connection admitted for a peer or observer handshake only (past the client cap because it
   * looked like one, or on a TLS link port), so any line that is not a handshake that succeeds
   * closes it: the cap is never bypassed by a `HERD` prefix. Its HELLO must come within the
   * handshake timeout and the handshake line limit, as every handshake line.
   */
  async run(initial?: Uint8Array, handshakeOnly?: string): Promise<void> {
    this.#handshakeOnly = handshakeOnly;
    const buf = new Uint8Array(READ_SIZE);
    let first = initial;
    let helloBytes = 0;
    const helloDeadline = handshakeOnly === undefined ? undefined : setTimeout(() => {
      if (this.#firstLine) this.close("handshake timeout (no HELLO)");
    }, HANDSHAKE_TIMEOUT_MS);
    this.#armIdle();
    try {
      while (!this.#closed) {
        if (this.#backlogged()) {
          await new Promise<void>((resolve) => (this.#onDrain = resolve));
          if (this.#closed) break;
        }
        let n: number | null;
        let input: Uint8Array = buf;
        try {
          if (first !== undefined) {
            input = first;
            n = first.length;
            first = undefined;
          } else {
            // The partial-line clock runs only while we wait here for the client: while we
            // work through a read, wait for a turn or for replies to drain, the rest of the
            // line may be sitting unread in the socket, and the silence is ours, not theirs.
            this.#armPartial();
            this.#reading = true;
            this.#readingSince = performance.now();
            try {
              n = await this.conn.read(buf);
              // The wall clock itself, not the monotonic one offset from it: the two drift by
              // microseconds, and a diff must never go below a client clock that agrees with ours.
              // An EOF brings no bytes: a final unterminated line arrived with its last read.
              // Bytes read while the server started arrived then, not at their replay (io.ts).
              if (n !== null) this.#arrivedNs = arrivedNs(this.conn) ?? nowNs();
            } finally {
              this.#reading = false;
              this.#clearPartial();
            }
          }
        } catch (err) {
          if (!this.#closed) this.reason = `read error: ${(err as Error).name}`;
          break;
        }
        if (n === null) {
          // Half-close: a final unterminated line is still a command.
          const last = this.splitter.flush();
          // Taken: no longer unfinished input, though the replies may take long to settle.
          this.#holdInput();
          if (last !== undefined) this.#handle([last], 0, true);
          this.#flush();
          await new Promise<void>((resolve) => {
            this.#onSettled = resolve;
            this.#wake();
          });
          break;
        }
        const lines = this.splitter.push(input.subarray(0, n));
        this.#holdInput();
        if (inputBudget.refuses(this.#inputHeld)) {
          inputBudget.cuts++;
          this.close("unfinished line over the process's input budget");
          break;
        }
        if (this.#firstLine && handshakeOnly !== undefined && lines.length === 0) {
          helloBytes += n;
          if (helloBytes > HANDSHAKE_LINE_LIMIT) {
            this.close(`${handshakeOnly} (a first line over the handshake line limit)`);
            break;
          }
        }
        if (this.#firstLine && lines.length > 0) {
          this.#firstLine = false;
          const first = lines[0];
          if (!first.overlong && first.text.startsWith(HANDSHAKE_PREFIX)) {
            if (await this.#handler.handshake(first.text, this, lines.slice(1))) {
              this.#handedOver = true;
              return;
            }
          }
        }
        // Backpressure holds per line, not per read: one read can carry a thousand commands,
        // and their replies (kilobytes each for WHATSAT) must not all pile up at once.
        // Reads complete in batches, each run to its end before the next poll: a pipelined read
        // takes its place behind the connections already queued rather than jump them.
        const pipelined = lines.length > 1;
        if (pipelined) pipelining++;
        try {
          if (pipelined) await turns.wait();
          this.#sliceStart = performance.now();
          for (let done = 0; done < lines.length && !this.#closed;) {
            done = this.#handle(lines, done);
            this.#flush();
            if (done < lines.length) {
              if (this.#backlogged()) {
                await new Promise<void>((resolve) => (this.#onDrain = resolve));
              }
              // Out of time with more to do: the other connections go first. (WHATSATs finish
              // in microtasks, so without this a pipeliner's drain-and-continue never yields.)
              if (this.#turnUsed()) {
                await turns.wait();
                this.#sliceStart = performance.now();
              }
            }
          }
        } finally {
          if (pipelined) pipelining--;
        }
        // A client that pipelines without pause must not hold the event loop for the others.
        const turn = this.#fair.turn();
        if (turn !== undefined) await turn;
      }
    } finally {
      clearTimeout(helloDeadline);
      // Handed over or closed: a link's lines are its own business.
      inputBudget.add(-this.#inputHeld);
      this.#inputHeld = 0;
      this.#clearPartial();
      this.#idleTimer?.clear();
      if (!this.#handedOver) this.close();
    }
  }

  /**
   * The server clock's time (ns) when the bytes ending the line being handled arrived: an
   * IAMAT's receive time. A line taken by the partial-line timer or at EOF arrived with its
   * last bytes, not when the wait ended; a line handled after its turn came, when it was read.
   */
  receivedNs(): bigint {
    return this.#arrivedNs;
  }

  /** Closes the socket; pending replies are dropped. */
  close(reason?: string): void {
    if (reason !== undefined && !this.#closed) this.reason = reason;
    if (this.#closed) return;
    this.#closed = true;
    const held = this.held;
    this.#out = [];
    this.#outBytes = this.#writeBytes = 0;
    outputBudget.remove(this, held);
    this.#wake();
    closeQuietly(this.conn);
  }

  /**
   * Handles lines from `from` on; stops early (returning where) while backlogged, unless
   * `force` (a single final or timed-out line). Returns the index of the first line not handled.
   */
  #handle(lines: SplitLine[], from = 0, force = false): number {
    if (this.#handshakeOnly !== undefined) {
      this.close(this.#handshakeOnly);
      return lines.length;
    }
    for (let i = from; i < lines.length; i++) {
      if (this.#closed) return lines.length;
      if (!force && this.#backlogged()) return i;
      if (!force && i > from && this.#turnUsed()) return i;
      const line = lines[i];
      let reply: string | Promise<string> | null;
      try {
        reply = this.#handler.handleLine(line, this);
      } catch (err) {
        // A bug must not kill the connection or lose the reply slot (nor its report: errText
        // never throws, whatever was thrown).
        console.error(`handler failed: ${oneLine(errText(err, true))}`);
        reply = formatInvalid(line.text);
      }
      if (reply === null) continue;
      if (typeof reply === "string" && this.#slots.length === 0) {
        this.#push(reply);
        continue;
      }
      const slot: Slot = { text: undefined };
      this.#slots.push(slot);
      if (typeof reply === "string") slot.text = reply;
      else {
        this.#inFlight++;
        reply.then(
          (text) => (slot.text = text),
          (err) => {
            console.error(`handler failed: ${oneLine(errText(err, true))}`);
            slot.text = formatInvalid(line.text);
          },
        ).then(() => {
          this.#inFlight--;
          this.#releaseSlots();
          this.#flush();
          this.#wake();
        });
      }
    }
    return lines.length;
  }

  /** True when this connection has had its share of the current turn (see TurnQueue). */
  #turnUsed(): boolean {
    return performance.now() - this.#sliceStart >= SLICE_MS ||
      (this.#inFlight >= TURN_IN_FLIGHT && (pipelining > 1 || turns.waiting > 0));
  }

  #push(text: string): void {
    // A reply that finished after the connection closed (a WHATSAT in its grace wait, a Places
    // lookup) goes nowhere: counted, it stayed in the process's output budget for good.
    if (this.#closed) return;
    this.#out.push(text);
    this.#outBytes += text.length;
    outputBudget.add(this, text.length);
  }

  #releaseSlots(): void {
    while (this.#slots.length > 0 && this.#slots[0].text !== undefined) {
      this.#push(this.#slots.shift()!.text!);
    }
  }

  #backlogged(): boolean {
    return this.#slots.length + this.#out.length >= this.#opts.maxPendingReplies ||
      this.#outBytes >= MAX_PENDING_BYTES || this.#inFlight >= MAX_IN_FLIGHT ||
      outputBudget.paused(this);
  }

  /** Starts writing the ready replies, whole and in order; one write in flight at a time. */
  #flush(): void {
    if (this.#writing || this.#out.length === 0 || this.#closed) return;
    const text = this.#out.length === 1 ? this.#out[0] : this.#out.join("");
    this.#out = [];
    this.#writeBytes = this.#outBytes;
    this.#outBytes = 0;
    this.#writing = true;
    // One write in flight at a time, so one buffer per connection serves every reply; it grows
    // to the largest reply seen, up to 64 KiB (beyond that a one-off buffer is used).
    let buf = this.#writeBuf;
    if (buf.length < text.length) {
      buf = new Uint8Array(text.length);
      if (text.length <= MAX_WRITE_BUF) this.#writeBuf = buf;
    }
    this.#writeOut(binaryInto(text, buf)).then(
      () => {
        this.#writing = false;
        this.#progressAt = performance.now();
        if (!this.#closed) {
          const written = this.#writeBytes;
          this.#writeBytes = 0;
          outputBudget.add(this, -written);
        }
        if (this.#out.length === 0) this.#wake();
        else if (this.#outBytes < MAX_WRITE_BUF || turns.waiting === 0) this.#flush();
        // Joining and encoding up to 1 MiB costs milliseconds, and hundreds of writes finish in
        // one poll: a big backlog is written on a turn of its own.
        else turns.wait().then(() => this.#flush());
      },
      () => {
        this.#writing = false;
        this.close("write failed");
      },
    );
  }

  /**
   * Writes every byte, stamping progress after each partial write: a client that reads its
   * replies slowly is making progress, one that never reads is not (see the idle timer).
   */
  async #writeOut(bytes: Uint8Array): Promise<void> {
    for (let off = 0; off < bytes.length;) {
      off += await this.conn.write(bytes.subarray(off));
      this.#progressAt = performance.now();
    }
  }

  /** Wakes the read loop (backpressure lifted) or the EOF path (everything written). */
  #wake(): void {
    if (this.#onDrain !== undefined && (this.#closed || !this.#backlogged())) {
      const resolve = this.#onDrain;
      this.#onDrain = undefined;
      resolve();
    }
    const idle = this.#slots.length === 0 && !this.#writing && this.#out.length === 0;
    if (this.#onSettled !== undefined && (this.#closed || idle)) {
      const resolve = this.#onSettled;
      this.#onSettled = undefined;
      resolve();
    }
  }

  #armPartial(): void {
    this.#clearPartial();
    const ms = this.#opts.partialLineMs;
    if (ms <= 0 || (this.splitter.pending === 0 && !this.splitter.discarding)) return;
    // Late (our loop stalled) it waits again, and on time it lets a read completed in the
    // same poll return first: the rest of the line may be sitting unread in the socket.
    this.#partialTimer = silenceTimer(ms, () => {
      this.#partialTimer = undefined;
      const line = this.splitter.flush();
      this.#holdInput();
      if (line === undefined || this.#closed) return;
      this.#handle([line], 0, true);
      this.#flush();
    }, Math.max(LATE_TIMER_MS, ms / 2));
  }

  /** Counts the splitter's unfinished line (as it is now) against the input budget. */
  #holdInput(): void {
    if (this.#closed) return;
    const held = this.splitter.pending;
    inputBudget.add(held - this.#inputHeld);
    this.#inputHeld = held;
  }

  #clearPartial(): void {
    this.#partialTimer?.clear();
    this.#partialTimer = undefined;
  }

  /**
   * Starts the idle timer if it is not running. Reads only stamp `#readingSince`: one timer per
   * connection, re-armed for the remaining time when it fires, instead of a new timer per read.
   */
  #armIdle(): void {
    const ms = this.#opts.idleTimeoutMs;
    if (ms <= 0 || this.#idleTimer !== undefined || this.#closed) return;
    this.#idleFor(ms);
  }

  #idleFor(wait: number): void {
    const ms = this.#opts.idleTimeoutMs;
    // Late (a stalled loop runs due timers before it reads the keep-alives that arrived
    // meanwhile) it waits again; on time it lets a read completed in the same poll return first.
    this.#idleTimer = silenceTimer(wait, () => {
      this.#idleTimer = undefined;
      if (this.#closed) return;
      // The client is silent only while we wait to read from it with nothing of ours pending:
      // not while we work through its commands, wait for a turn or for replies to drain or be
      // written. Its silence starts when we began reading or our last write progressed.
      const now = performance.now();
      // A write that has not moved for a whole period is the client's doing (it does not read
      // its replies): without this, such a client held its connection (and its bytes) forever.
      if (this.#writing && now - this.#progressAt >= ms) return this.close("write stalled");
      const busy = !this.#reading || this.#slots.length > 0 || this.#out.length > 0 ||
        this.#writing;
      const quiet = now - Math.max(this.#readingSince, this.#progressAt);
      if (busy) this.#idleFor(this.#writing ? ms - (now - this.#progressAt) : ms);
      else if (quiet < ms) this.#idleFor(ms - quiet);
      else this.close("idle timeout");
    }, LATE_TIMER_MS);
  }
}
