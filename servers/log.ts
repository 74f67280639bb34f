/**
 * Per-server log files (`<dir>/<Server>.log`), fed by the event bus.
 *
 * Formatting is cheap string work on the hot path; the file writes are not: lines are buffered
 * and written in batches (every 50 ms, or sooner when 256 KiB pile up), one synchronous write
 * into the page cache per batch, so logging never waits on the disk per event and never queues
 * memory behind a slow write thread. `close()` flushes everything.
 *
 * Line format: `<ISO time> <KIND> <details>`, exactly one event per line. Every byte outside
 * printable ASCII, and backslash, is written as `\xHH` (a reply's LF is `\x0a`, CR `\x0d`, ESC
 * `\x1b`, `\` is `\x5c`): outside text cannot forge a line or drive a terminal, and
 * {@linkcode unescapeLogText} gives the original bytes back.
 *
 * Every command (`IN`) and every reply (`OUT`) is logged, but a valid command cannot make the log
 * outgrow what it received by more than a constant: a WHATSAT's `OUT` line is its AT line and a
 * summary of the JSON body (`[JSON <bytes> bytes, status=<status>, results=<n>]`), never the
 * body, and an AT reply's diff, location or time longer than {@linkcode OUT_FIELD_MAX} bytes is
 * elided in `OUT` lines (`<first 16 chars>...[<n> bytes]`): the record is written whole in its
 * `IN` and `ACCEPT` lines, once. (Invalid lines and stale IAMATs have a budget: log_budget.ts.)
 *
 * With `format: "json"`, each line is instead one JSON object (`time`, `server`, `kind` and the
 * event's fields; a batch's records as `count` and `clients`), ASCII only: JSON escapes control
 * characters and every char above 0x7e is `\uXXXX` (wire text is one char per byte), so the same
 * guarantees hold. The same events are logged in both formats.
 *
 * `reopen()` (SIGHUP in cli/run.ts) closes each file and opens its path again, for logrotate.
 *
 * @module
 */

import { asciiJson, type EventBus, type HerdEvent, type ReplyOutEvent } from "./events.ts";
import type { AtFields } from "./record.ts";
import { formatAt } from "./protocol.ts";
import { binaryInto, binaryToBytes } from "./lines.ts";
import { writeAllSync } from "./io.ts";
import { hostPort } from "./http_host.ts";
import { LogBudget, type MuteNote, type Note } from "./log_budget.ts";
import { processRecordBytes, type RecordBytes } from "./record_bytes.ts";

const FLUSH_MS = 50;
const FLUSH_BYTES = 256 * 1024;

/** Printable ASCII but backslash: what a log line keeps as it is. */
const NEEDS_ESCAPE = /[^\x20-\x5b\x5d-\x7e]/;
const HEX = Array.from({ length: 256 }, (_, b) => `\\x${b.toString(16).padStart(2, "0")}`);
const utf8 = new TextEncoder();

/**
 * A log line's text with every byte outside printable ASCII, and backslash, written as `\xHH`
 * (lower-case hex), so a line is always one line, a terminal shows no escape sequence, and
 * {@linkcode unescapeLogText} gives the bytes back. Wire text is a binary string (one char per
 * byte); a char above 0xff (Unicode text such as a Places error) is escaped as its UTF-8 bytes.
 * Text with nothing to escape (nearly every line) is returned as is, after one regex test.
 *
 * @example
 * ```ts
 * escapeLogText("IN #1 a\rb\\c\x1b[2J"); // "IN #1 a\\x0db\\x5cc\\x1b[2J"
 * ```
 */
export function escapeLogText(text: string): string {
  if (!NEEDS_ESCAPE.test(text)) return text;
  // A slice-and-append loop: five times faster than replace() with a callback on a WHATSAT reply.
  let out = "";
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e && c !== 0x5c) continue;
    out += text.slice(from, i);
    if (c <= 0xff) {
      out += HEX[c];
    } else {
      const wide = text.codePointAt(i)! > 0xffff ? 2 : 1; // a surrogate pair is one char
      for (const b of utf8.encode(text.slice(i, i + wide))) out += HEX[b];
      i += wide - 1;
    }
    from = i + 1;
  }
  return out + text.slice(from);
}

/**
 * The bytes (as a binary string) of an escaped log text: each `\xHH` becomes byte HH.
 *
 * @example
 * ```ts
 * unescapeLogText("a\\x0db\\x5cc"); // "a\rb\\c"
 * ```
 */
export function unescapeLogText(text: string): string {
  return text.replace(/\\x([0-9a-f]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}

let stampMs = -1;
let stampText = "";
/** `stampText` and a space, as bytes (ASCII). */
let stampBytes = new Uint8Array(0);

/** ISO time of `t`, cached per millisecond: many events share one. */
function stamp(t: number): string {
  if (t !== stampMs) {
    stampMs = t;
    stampText = new Date(t).toISOString();
    stampBytes = utf8.encode(stampText + " ");
  }
  return stampText;
}

/**
 * An AT reply's diff, location or time longer than this is elided in its OUT line (written whole
 * in the IN line and the record's ACCEPT): a 65 KB location is logged once per record, not once
 * per WHATSAT that names it. Client IDs (at most 256 bytes) are never elided.
 */
export const OUT_FIELD_MAX = 64;
/** Chars of an elided field kept before `...[<n> bytes]`. */
const ELIDED_HEAD = 16;
/** The fields of an AT line (`AT origin diff client location time`) that may be elided. */
const ELIDABLE = [2, 4, 5];

/**
 * Whether chars `0..end` of `reply` are an AT line with an elidable field (diff, location, time)
 * over {@linkcode OUT_FIELD_MAX}: a long client ID alone leaves the line as it is.
 */
function hasLongField(reply: string, end: number): boolean {
  if (end <= OUT_FIELD_MAX || !reply.startsWith("AT ")) return false;
  for (let from = 0, i = 0; from < end; i++) {
    let space = reply.indexOf(" ", from);
    if (space < 0 || space > end) space = end;
    if (space - from > OUT_FIELD_MAX && ELIDABLE.includes(i)) return true;
    from = space + 1;
  }
  return false;
}

/** `line` with each long diff, location or time of an AT line elided (numeric fields, so
 * `...[<n> bytes]` can never be a field's own text). */
function elideAt(line: string): string {
  if (!hasLongField(line, line.length)) return line;
  const f = line.split(" ");
  if (f.length !== 6) return line;
  for (const i of ELIDABLE) {
    if (f[i].length > OUT_FIELD_MAX) {
      f[i] = `${f[i].slice(0, ELIDED_HEAD)}...[${f[i].length} bytes]`;
    }
  }
  return f.join(" ");
}

/** What an OUT line logs of a reply: its first line (long AT fields elided), and for a WHATSAT the
 * JSON body's size and status, never the body. */
interface LoggedReply {
  /** The first line, without its LF. */
  line: string;
  /** Whether the reply ended its first line with a LF. */
  lf: boolean;
  /** A WHATSAT's JSON body, summarised; undefined for one-line replies. */
  body?: { bytes: number; status?: string; results?: number };
}

/** See {@linkcode LoggedReply}. */
function loggedReply(e: ReplyOutEvent): LoggedReply {
  const r = e.reply;
  const lf = r.indexOf("\n");
  const line = elideAt(lf < 0 ? r : r.slice(0, lf));
  if (lf < 0 || lf === r.length - 1) return { line, lf: lf >= 0 };
  // `AT ...\n<JSON>\n\n`: the JSON's own bytes.
  const bytes = r.length - lf - 1 - (r.endsWith("\n\n") ? 2 : 0);
  return { line, lf: true, body: { bytes, ...e.places } };
}

/** The text an OUT line gives for a reply, after `OUT #<conn> `. */
function replyText(e: ReplyOutEvent): string {
  const { line, body } = loggedReply(e);
  if (body === undefined) return line;
  return `${line} [JSON ${body.bytes} bytes${
    body.status === undefined ? "" : `, status=${body.status}, results=${body.results}`
  }]`;
}

/** The client IDs of a batch, space-separated: enough to trace each record to its ACCEPT line. */
function clientIds(records: readonly AtFields[]): string {
  let ids = "";
  for (const r of records) ids += " " + r.client;
  return ids;
}

/**
 * The log line for an event (without a final LF), or undefined for events that are not logged.
 *
 * A record's full AT fields appear once per server, in its `IN`/`ACCEPT` line; propagation
 * batches name their records by client ID and drops by client ID and time, which keeps the log
 * at about 1.4 KB per update across the seed herd instead of 3.3.
 *
 * @example
 * ```ts
 * formatLogLine({ kind: "server.up", server: "Hill", host: "127.0.0.1", port: 12000, t: 0 });
 * // "1970-01-01T00:00:00.000Z UP listening on 127.0.0.1:12000"
 * ```
 */
export function formatLogLine(e: HerdEvent): string | undefined {
  const text = logText(e);
  // Escaped as a whole: no field of outside text (lines, IDs, names, addresses, reasons,
  // Places errors) can break the line or reach a terminal raw.
  return text === undefined ? undefined : `${stamp(e.t)} ${escapeLogText(text)}`;
}

/** The text of an event's log line, before its time and its escaping (see formatLogLine). */
function logText(e: HerdEvent): string | undefined {
  let text: string;
  switch (e.kind) {
    case "server.up":
      text = `UP listening on ${hostPort(e.host, e.port)}`;
      break;
    case "server.down":
      text = "DOWN stopped";
      break;
    case "client.connect":
      text = `CONNECT #${e.conn} from ${e.remote}`;
      break;
    case "client.disconnect":
      text = `DISCONNECT #${e.conn} ${e.remote} (${e.reason})`;
      break;
    case "client.refused":
      text = `REFUSED ${e.remote} (${e.reason})`;
      break;
    case "line.in":
      text = `IN #${e.conn} ${e.line}`;
      break;
    case "reply.out":
      text = `OUT #${e.conn} ${replyText(e)}`;
      break;
    case "invalid":
      text = `INVALID #${e.conn} ${e.reason}`;
      break;
    case "location.accepted":
      // A catch-up moves whole stores: its batches get one summary line each (below).
      if (e.catchUp) return undefined;
      text = `ACCEPT ${e.from === null ? "client" : `from ${e.from}`} ${formatAt(e.record)}`;
      break;
    case "location.dropped":
      if (e.catchUp) return undefined;
      text = e.from === null
        ? `DROP ${e.reason} client ${formatAt(e.record)}`
        : `DROP ${e.reason} from ${e.from} ${e.record.client} ${e.record.time}`;
      break;
    case "propagation.sent":
      text = e.catchUp
        ? `SEND to ${e.to} ${e.records.length} record(s) (catch-up batch)`
        : `SEND to ${e.to} ${e.records.length} record(s):${clientIds(e.records)}`;
      break;
    case "propagation.received":
      text = `RECV from ${e.from} ${e.records.length} record(s)${
        e.catchUp ? " (catch-up batch)" : ""
      }`;
      break;
    case "link.up":
      text = `LINK UP ${e.peer} (${e.direction === "out" ? "dialled" : "accepted"})`;
      break;
    case "link.down":
      text = `LINK DOWN ${e.peer} (${e.reason})`;
      break;
    case "link.control":
      text = `LINK ${e.cut ? "CUT" : "OPEN"} ${e.peer} delay ${e.delayMs} ms`;
      break;
    case "sync.done":
      text = `SYNC ${e.peer} sent ${e.sent} received ${e.received} in ${e.ms} ms`;
      break;
    case "peer.rejected":
      text = `PEER REJECTED ${e.remote} (${e.reason})`;
      break;
    case "whatsat":
      text = `PLACES ${e.provider} status=${e.status} results=${e.count} latency=${
        e.latencyMs.toFixed(1)
      }ms coalesced=${e.coalesced} client=${e.client} radius=${e.radiusKm}km bound=${e.bound}${
        e.error ? ` error=${asciiJson(e.error)}` : ""
      }`;
      break;
    case "receipt.late":
      // Once per late peer, not per record: it is not waited for until it receipts again.
      text = `LATE RECEIPT ${e.client} from ${e.peers.join(",")} after ${
        e.waitedMs.toFixed(1)
      } ms; not waited for until it receipts again`;
      break;
    case "error":
      text = `ERROR ${e.reason}: ${e.message}`;
      break;
    default:
      return undefined;
  }
  return text;
}

/**
 * The JSON log line for an event (without a final LF), or undefined for events that are not
 * logged (the same ones as {@linkcode formatLogLine}).
 *
 * @example
 * ```ts
 * formatJsonLogLine({ kind: "line.in", server: "Hill", conn: 1, line: "a\x1b", t: 0 });
 * // '{"time":"1970-01-01T00:00:00.000Z","server":"Hill","kind":"line.in","conn":1,"line":"a\\u001b"}'
 * ```
 */
export function formatJsonLogLine(e: HerdEvent): string | undefined {
  // Whether the text format logs it; a reply always is (not built twice just to ask).
  if (e.kind !== "reply.out" && logText(e) === undefined) return undefined;
  const { t, server, kind, ...fields } = e as HerdEvent & { records?: readonly AtFields[] };
  const out: Record<string, unknown> = { time: stamp(t), server, kind, ...fields };
  if (e.kind === "reply.out") {
    // As in the text format: the first line (long fields elided), a WHATSAT's body summarised.
    const { line, lf, body } = loggedReply(e);
    out.reply = lf ? line + "\n" : line;
    delete out.places;
    if (body !== undefined) out.body = body;
  }
  if (fields.records !== undefined) {
    // As in the text format: a batch names its records by client ID, a catch-up batch by count.
    delete out.records;
    out.count = fields.records.length;
    if (!(e as { catchUp?: boolean }).catchUp) out.clients = fields.records.map((r) => r.client);
  }
  return asciiJson(out);
}

/**
 * The log line of a mute note ({@linkcode LogBudget}): `MUTE #<conn>` when a connection's invalid
 * lines overdraw the log budget, `UNMUTE #<conn>` with the count left out when it is heard again or
 * leaves.
 *
 * @example
 * ```ts
 * formatMuteLine({ kind: "unmute", conn: 3, skipped: 12 }, 0, "Hill", false);
 * // "1970-01-01T00:00:00.000Z UNMUTE #3 (12 line(s) not logged)"
 * ```
 */
export function formatMuteLine(n: MuteNote, t: number, server: string, json: boolean): string {
  if (json) {
    return asciiJson({
      time: stamp(t),
      server,
      kind: n.kind === "mute" ? "log.mute" : "log.unmute",
      conn: n.conn,
      skipped: n.skipped,
    });
  }
  return n.kind === "mute"
    ? `${
      stamp(t)
    } MUTE #${n.conn} (invalid lines or stale IAMATs over the log budget: counted, not logged)`
    : `${stamp(t)} UNMUTE #${n.conn} (${n.skipped} line(s) not logged)`;
}

/**
 * Puts the line of one of the events every update logs at every server (IN, OUT, ACCEPT, DROP,
 * SEND, RECV: 13.5 lines per update across the seed herd) straight into `file`, piece by piece,
 * exactly as {@linkcode formatLogLine} would write it; returns false for other kinds, or when a
 * piece needed escaping (nothing is added then). The rest go through `formatLogLine`'s text.
 */
function putHot(file: LogFile, e: HerdEvent, tails: RecordBytes | undefined): boolean {
  switch (e.kind) {
    case "line.in":
      file.begin(e.t);
      file.put("IN #");
      file.put(String(e.conn));
      file.put(" ");
      file.put(e.line);
      return file.end();
    case "reply.out": {
      const r = e.reply;
      const end = r.endsWith("\n") ? r.length - 1 : r.length;
      // A WHATSAT's reply (a second line) or a long AT field: summarised by replyText.
      if (r.lastIndexOf("\n", end - 1) >= 0 || hasLongField(r, end)) return false;
      file.begin(e.t);
      file.put("OUT #");
      file.put(String(e.conn));
      file.put(" ");
      file.put(r, 0, end);
      return file.end();
    }
    case "location.accepted":
      if (e.catchUp) return false;
      file.begin(e.t);
      if (e.from === null) file.put("ACCEPT client ");
      else {
        file.put("ACCEPT from ");
        file.put(e.from);
        file.put(" ");
      }
      putAt(file, e.record, tails);
      return file.end();
    case "location.dropped":
      if (e.catchUp) return false;
      file.begin(e.t);
      file.put("DROP ");
      file.put(e.reason);
      if (e.from === null) {
        file.put(" client ");
        putAt(file, e.record, tails);
      } else {
        file.put(" from ");
        file.put(e.from);
        file.put(" ");
        file.put(e.record.client);
        file.put(" ");
        file.put(e.record.time);
      }
      return file.end();
    case "propagation.sent":
      if (e.catchUp) return false;
      file.begin(e.t);
      file.put("SEND to ");
      file.put(e.to);
      file.put(" ");
      file.put(String(e.records.length));
      file.put(" record(s):");
      for (const r of e.records) {
        file.put(" ");
        file.put(r.client);
      }
      return file.end();
    case "propagation.received":
      if (e.catchUp) return false;
      file.begin(e.t);
      file.put("RECV from ");
      file.put(e.from);
      file.put(" ");
      file.put(String(e.records.length));
      file.put(" record(s)");
      return file.end();
  }
  return false;
}

/**
 * {@linkcode formatAt} of `r`, put piece by piece; with `tails` (a process of several servers,
 * each logging the same record), its fields' bytes kept for the process when they need no escape.
 */
function putAt(file: LogFile, r: AtFields, tails: RecordBytes | undefined): void {
  const i = tails === undefined ? -1 : tails.find(r);
  if (i >= 0 && tails!.plain(i)) {
    file.put("AT");
    file.putTail(tails!, i);
    return;
  }
  file.put("AT ");
  file.put(r.origin);
  file.put(" ");
  file.put(r.diff);
  file.put(" ");
  file.put(r.client);
  file.put(" ");
  file.put(r.location);
  file.put(" ");
  file.put(r.time);
}

/** How long a log file that failed to write or open waits before it is tried again (ms). */
const RETRY_MS = 1_000;

/** An open log file with its pending bytes. */
class LogFile {
  readonly path: string;
  #file: Deno.FsFile | undefined;
  /** Lines are encoded as they come, so no log string outlives its event (GC copies survivors). */
  #buf = new Uint8Array(FLUSH_BYTES * 2);
  #len = 0;
  /** Where the line being put goes next (`begin`..`end`); -1 when it cannot be put. */
  #at = -1;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Lines lost since the file last took a write (full disk, unopenable path), and why. */
  #lost = 0;
  #why = "";
  /** The file's size after the last whole write: a write cut short is cut back to it. */
  #size = 0;
  /** A failed write left half a line that could not be cut off: the next write ends it first. */
  #torn = false;
  /** Failing since the last write that failed, until one succeeds. */
  #failing = false;
  /** While failing: when to try the disk again (lines before then are counted and dropped). */
  #retryAt = 0;
  readonly #onFailure: (message: string) => void;
  readonly #gapLine: (lost: number, why: string) => string;

  constructor(
    path: string,
    onFailure: (message: string) => void,
    gapLine: (lost: number, why: string) => string,
  ) {
    this.path = path;
    this.#onFailure = onFailure;
    this.#gapLine = gapLine;
    this.#open();
  }

  #open(): void {
    try {
      this.#file = Deno.openSync(this.path, { create: true, append: true });
      this.#size = this.#file.statSync().size;
    } catch (err) {
      // An unopenable log must not stop the herd: report, drop lines, try again later.
      this.#failed(`cannot open log ${this.path}: ${(err as Error).message}`);
    }
  }

  /** Flushes to the file open now (renamed or not), then opens the path again. */
  reopen(): void {
    this.close();
    this.#retryAt = 0;
    this.#open();
  }

  /**
   * Adds the text line of an event at `t` whose unescaped text is `text`: the same bytes as
   * `add(formatLogLine(e))`, without building the line.
   */
  addText(t: number, text: string): void {
    this.begin(t);
    this.put(text);
    if (!this.end()) this.add(`${stampText} ${escapeLogText(text)}`);
  }

  /**
   * Starts a line at `t` in the batch: the time's bytes, copied from a cache. `put` then copies
   * the line's pieces straight in, and `end` completes it. A piece with a char to escape (rare),
   * or a line that does not fit the batch, makes `end` return false with nothing added: the
   * caller then adds the escaped line with `add`. No line string is built for the common case.
   */
  begin(t: number): void {
    stamp(t);
    const head = stampBytes;
    if (this.#len + head.length >= this.#buf.length) {
      this.#at = -1;
      return;
    }
    this.#buf.set(head, this.#len);
    this.#at = this.#len + head.length;
  }

  /** Copies `text` (chars `from` to `to`) into the line begun; see `begin`. */
  put(text: string, from = 0, to = text.length): void {
    let at = this.#at;
    const buf = this.#buf;
    // One byte per char (and the LF) must fit; a byte loop beats TextEncoder.encodeInto's
    // wrapper for pieces this short, and checks for escapes as it copies.
    if (at < 0 || at + (to - from) >= buf.length) {
      this.#at = -1;
      return;
    }
    for (let i = from; i < to; i++) {
      const c = text.charCodeAt(i);
      if (c < 0x20 || c > 0x7e || c === 0x5c) {
        this.#at = -1;
        return;
      }
      buf[at++] = c;
    }
    this.#at = at;
  }

  /** Copies the tail kept at `i` (printable ASCII but backslash) into the line begun; see `begin`. */
  putTail(tails: RecordBytes, i: number): void {
    const at = this.#at;
    if (at < 0 || at + tails.length(i) >= this.#buf.length) {
      this.#at = -1;
      return;
    }
    this.#at = tails.copyTo(i, this.#buf, at);
  }

  /** Completes the line begun; false (nothing added) when a piece needed escaping or room. */
  end(): boolean {
    const at = this.#at;
    this.#at = -1;
    if (at < 0) return false;
    this.#buf[at] = 10;
    this.#len = at + 1;
    if (this.#len >= FLUSH_BYTES) this.flush();
    else if (this.#timer === undefined) this.#timer = setTimeout(() => this.flush(), FLUSH_MS);
    return true;
  }

  add(line: string): void {
    if (this.#len + line.length + 1 > this.#buf.length) {
      this.flush();
      if (line.length + 1 > this.#buf.length) {
        this.#write(binaryToBytes(line + "\n"));
        return;
      }
    }
    // A log line is ASCII (escaped, or asciiJson), so its UTF-8 is its bytes: the native encoder
    // copies it in one call, faster than binaryInto's per-char loop (which stays the fallback).
    const { read, written } = utf8.encodeInto(line, this.#buf.subarray(this.#len));
    if (read === line.length && written === read) this.#len += written;
    else this.#len += binaryInto(line, this.#buf.subarray(this.#len)).length;
    this.#buf[this.#len++] = 10;
    if (this.#len >= FLUSH_BYTES) this.flush();
    else if (this.#timer === undefined) this.#timer = setTimeout(() => this.flush(), FLUSH_MS);
  }

  /**
   * Writes the batch with one synchronous write into the page cache (~0.1 ms for 256 KiB).
   * Asynchronous writes queue their buffers when the herd logs faster than the write thread
   * drains them, and that queue (and the memory it leaves behind) grows with the load.
   */
  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#len === 0) return;
    const bytes = this.#buf.subarray(0, this.#len);
    this.#len = 0;
    this.#write(bytes);
  }

  /** Writes `bytes` (whole lines), or counts their lines lost. */
  #write(bytes: Uint8Array): void {
    if (this.#failing && performance.now() < this.#retryAt) {
      this.#lost += countLines(bytes);
      return;
    }
    if (this.#file === undefined) this.#open();
    const file = this.#file;
    if (file === undefined) {
      this.#lost += countLines(bytes);
      return;
    }
    try {
      if (this.#torn || this.#lost > 0) {
        // Back after a failure: end a torn line, then say what is missing, in the log itself.
        const gap = binaryToBytes(
          (this.#torn ? "\n" : "") +
            (this.#lost > 0 ? this.#gapLine(this.#lost, this.#why) + "\n" : ""),
        );
        writeAllSync(file, gap);
        this.#size += gap.length;
        this.#torn = false;
        this.#lost = 0;
      }
      writeAllSync(file, bytes);
      this.#size += bytes.length;
      this.#failing = false;
    } catch (err) {
      // A failing disk must not take the herd down, nor end logging for good: the file stays
      // open, the lines are counted, and the disk is tried again in a second. What a write cut
      // short left is cut back off (this frees space, so it works on a full disk), else its
      // torn line is ended before the next write.
      try {
        if (file.statSync().size !== this.#size) file.truncateSync(this.#size);
      } catch {
        this.#torn = true;
      }
      this.#lost += countLines(bytes);
      this.#failed(`cannot write log ${this.path}: ${(err as Error).message}`);
    }
  }

  /** Starts (or continues) a failure: said once per failure, not once per batch. */
  #failed(message: string): void {
    this.#retryAt = performance.now() + RETRY_MS;
    if (this.#failing) return;
    this.#failing = true;
    this.#why = message;
    this.#onFailure(message);
  }

  close(): void {
    this.flush();
    this.#file?.close();
    this.#file = undefined;
  }
}

/** Line feeds in `bytes`, at least 1. */
function countLines(bytes: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < bytes.length; i++) if (bytes[i] === 10) n++;
  return Math.max(1, n);
}

/** How {@linkcode openLogs} writes. */
export interface LogOptions {
  /** `text` (default): escaped text lines; `json`: one JSON object per line. */
  format?: "text" | "json";
}

/** Open log files. */
export interface Logs {
  close(): Promise<void>;
  flush(): Promise<void>;
  /** Closes every file and opens its path again (after logrotate renamed it). */
  reopen(): void;
}

/**
 * Writes each server's events to `<dir>/<Server>.log` until closed.
 *
 * @example
 * ```ts
 * import { EventBus } from "./events.ts";
 *
 * const bus = new EventBus(); // a Herd's `bus`
 * const logs = await openLogs(bus, "./logs", ["Hill", "Jaquez"]);
 * // ... later, on shutdown:
 * await logs.close();
 * ```
 */
export async function openLogs(
  bus: EventBus,
  dir: string,
  servers: readonly string[],
  opts: LogOptions = {},
): Promise<Logs> {
  await Deno.mkdir(dir, { recursive: true });
  const files = new Map<string, { file: LogFile; budget: LogBudget; note: Note }>();
  const json = opts.format === "json";
  // Several servers log each record's ACCEPT line: its fields' bytes are encoded once.
  const tails = servers.length > 1 ? processRecordBytes : undefined;
  const format = json ? formatJsonLogLine : formatLogLine;
  for (const name of servers) {
    const failed = (message: string) => {
      console.error(message);
      // An error event for metrics and the dashboard; its own log line is kept for when the
      // file takes writes again (or counted lost with the rest).
      queueMicrotask(() =>
        bus.emit({ kind: "error", t: Date.now(), server: name, reason: "log-write", message })
      );
    };
    const gap = (lost: number, why: string) =>
      format({
        kind: "error",
        t: Date.now(),
        server: name,
        reason: "log-write",
        message: `${lost} log line(s) lost: ${why}`,
      })!;
    const file = new LogFile(`${dir}/${name}.log`, failed, gap);
    // One note callback per server, not a closure per event.
    const note: Note = (n, t) => file.add(formatMuteLine(n, t, name, json));
    files.set(name, { file, budget: new LogBudget(), note });
  }
  const off = bus.subscribe((e) => {
    const entry = files.get(e.server);
    if (entry === undefined) return;
    const { file, budget, note } = entry;
    if (!budget.admit(e, note)) return;
    if (!json) {
      if (putHot(file, e, tails)) return;
      const text = logText(e);
      if (text !== undefined) file.addText(e.t, text);
      return;
    }
    const line = format(e);
    if (line !== undefined) file.add(line);
  });
  return {
    reopen() {
      for (const { file } of files.values()) file.reopen();
    },
    flush() {
      for (const { file } of files.values()) file.flush();
      return Promise.resolve();
    },
    close() {
      off();
      for (const { file } of files.values()) file.close();
      return Promise.resolve();
    },
  };
}
