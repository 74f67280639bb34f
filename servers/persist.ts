/**
 * Durable records: each server appends its records, its store epoch and its links' marks to one
 * record log, `<data-dir>/<server>.records`, and replays it at start.
 *
 * The file is a sequence of entries, one per line: `<crc32 as 8 hex digits> <payload>\n`, with
 * the CRC-32 of the payload's bytes, so a torn tail (a crash mid-write) or a flipped byte is
 * detected. Payloads: `E 1 <epoch>` (the store epoch, first; a later one replaces it), `R <seq>
 * <origin> <diff> <client> <location> <time>` (a record; protocol fields hold no whitespace),
 * `M <peer> <epoch> <seq>` (a link's mark), `C 1` (a clean stop with nothing owed: when it is
 * not last, the next start takes a fresh epoch). The layout and how each of its limits and
 * faults is handled are in docs/reliability.md.
 *
 * Writes are group-committed: what is queued within one commit interval (10 ms) is appended in
 * one go and made durable with one `fdatasync`. The logs of one process commit on one shared tick,
 * and their `fdatasync`s run on the process's sync thread (servers/disk_sync.ts). A link's mark goes in the commit after the one
 * that synced the records it covers, so it never passes a record that is not on disk. A failed append is cut off again and retried with backoff, everything owed
 * included; `committed()` fails meanwhile, so `--sync-ack` never acknowledges what is not on disk.
 *
 * @module
 */

import { crc32 } from "node:zlib";
import type { ErrorReason, EventBus } from "./events.ts";
import type { Link } from "./peers.ts";
import { freshEpoch, recordFields, type RecordStore, type StoredRecord } from "./store.ts";
import { RecordQueue } from "./record_queue.ts";
import { processRecordBytes, RecordBytes, TAIL_SLOTS } from "./record_bytes.ts";
import { bytesToBinary } from "./lines.ts";
import { INTEGER } from "./protocol.ts";
import { type AtFields, validateRecord } from "./record.ts";
import { writeAll, writeAllSync } from "./io.ts";
import { Backoff } from "./backoff.ts";
import { FairShare } from "./fair.ts";
import { diskSync } from "./disk_sync.ts";

/** Durable storage for one server. */
export interface Persistence {
  /** Fills an empty store (and the links' marks) from disk; reports problems on `bus`. */
  load(store: RecordStore, links: readonly Link[], bus: EventBus): Promise<void>;
  /** Queues a newly stored record for the next commit. */
  saved(record: StoredRecord): void;
  /**
   * Resolves once everything queued before the call is on disk; rejects when the write that
   * should have put it there failed (it stays queued and is retried).
   */
  committed(): Promise<void>;
  /** False while writes fail (a full disk): what is queued is owed and being retried. */
  readonly writable: boolean;
  /** Queues a link's mark for the next commit. */
  markMoved(link: Link): void;
  /** The store took a fresh epoch while running: written with the next commit, at once. */
  epochRenewed(epoch: string): void;
  /** Tries to write everything queued now (never rejects: a failure is reported and retried). */
  flush(): Promise<void>;
  /**
   * The server stopped: flushes, and when nothing is owed ends the log with a clean stop, so the
   * next load keeps the epoch. The store stays open (the server may start again).
   */
  stopped(): Promise<void>;
  /** Flushes and closes the store (a clean stop, as {@linkcode Persistence.stopped}). */
  close(): Promise<void>;
}

/** A link's mark as stored. */
type Mark = { epoch: string; seq: number };

/** Encoded bytes per write call while appending or compacting, so no huge string is built. */
const CHUNK = 1 << 20;
/** Bytes read at a time when replaying (the buffer grows only for a longer line). */
const REPLAY_CHUNK = 256 << 10;
/** Entries parsed between two looks at the clock when replaying (~2 ms of work). */
const REPLAY_STEP = 512;
/** Work a replay or restore does before letting the other servers of the process run (ms). */
const RESTORE_SLICE_MS = 20;
/** Retry backoff after a failed write: doubles from the first to the last. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 1000;
/** While writes keep failing, the error is reported again at most this often. */
const REPORT_EVERY_MS = 10_000;
/**
 * How long a start waits for a record log's lock that another process holds, and how often it
 * tries: a server stopped by a signal closes its port first and gives the lock up after its last
 * flush (up to a second later at load), so a restart in between finds it taken for a moment. The
 * same 3 s as a port still in use (servers/server.ts).
 */
const CLAIM_WAIT_MS = 3_000;
const CLAIM_STEP_MS = 50;
/** The entry a clean stop ends the log with. */
const CLEAN_STOP = "C 1";
/** Compaction runs when the file holds more entries than twice the live ones plus this. */
const COMPACT_SLACK = 10_000;
/** Queued records that start a commit before the interval is up. */
const EARLY_COMMIT = 10_000;

/**
 * CRC-32 (zlib's polynomial) tables for four bytes a step ("slicing by 4"): `[0, 256)` is the
 * byte-at-a-time table, `[256k, 256k + 256)` the same for a byte k places further back. A
 * catch-up appends every record it takes, and the byte loop was 5% of the restarted server's
 * thread (BENCHMARKS.md, "Catch-up of 2026-11-27 (fifth pass)").
 */
const CRC_TABLES = (() => {
  const t = new Int32Array(1024);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  for (let n = 256; n < 1024; n++) t[n] = (t[n - 256] >>> 8) ^ t[t[n - 256] & 0xff];
  return t;
})();

const HEX = new TextEncoder().encode("0123456789abcdef");

/**
 * Entries encoded straight into one reused byte buffer: `<crc32 hex> <payload>\n`, the CRC-32
 * over the payload's bytes (a binary string: one byte per char). A group commit during a catch-up appends thousands of records, and
 * building a payload string, an entry string and their join, encoding it and hashing each
 * payload through a native call, cost about a tenth of a restarted server's time
 * (BENCHMARKS.md, "Catch-up of 2026-11-27 (second pass)").
 */
export class EntryBuffer {
  #buf = new Uint8Array(64 * 1024);
  #len = 0;
  #start = 0;

  /** Bytes held. */
  get length(): number {
    return this.#len;
  }

  /** The bytes held, valid until the next call; then empty again. */
  take(): Uint8Array {
    const out = this.#buf.subarray(0, this.#len);
    this.#len = 0;
    return out;
  }

  /** Appends the entry of a payload (a binary string). */
  add(payload: string): void {
    this.#begin(payload.length);
    this.#text(payload);
    this.#end();
  }

  /**
   * Appends a record's entry: `R <seq> <origin> <diff> <client> <location> <time>`. With `tails`
   * (a process whose logs hold the same record bodies), the part after the seq is encoded and
   * hashed once for all of them: see {@linkcode RecordTails}.
   */
  record(r: StoredRecord, tails?: RecordTails): void {
    this.entry(recordFields(r), r.seq, tails);
  }

  /** {@linkcode record} for a record given as its AT fields (a store's shared body) and seq. */
  entry(fields: AtFields, seqNumber: number, tails?: RecordTails): void {
    const i = tails === undefined ? -1 : tails.find(fields);
    if (i >= 0) {
      this.#shared(seqNumber, i, tails!);
      return;
    }
    const seq = String(seqNumber);
    const { origin, diff, client, location, time } = fields;
    this.#begin(
      7 + seq.length + origin.length + diff.length + client.length + location.length +
        time.length,
    );
    this.#buf[this.#len++] = 82; // R
    this.#field(seq);
    this.#field(origin);
    this.#field(diff);
    this.#field(client);
    this.#field(location);
    this.#field(time);
    this.#end();
  }

  /** A record's entry from its seq and its body's tail kept at `i` (same bytes as `record`). */
  #shared(seq: number, i: number, tails: RecordTails): void {
    const digits = String(seq);
    const n = tails.tails.length(i);
    this.#begin(2 + digits.length + n);
    const b = this.#buf;
    const start = this.#start;
    b[start + 9] = 82; // R
    b[start + 10] = 32;
    this.#len = start + 11;
    this.#text(digits);
    // The CRC register over `R <seq>`, then carried across the tail's bytes in one step.
    const t = CRC_TABLES;
    let c = -1;
    let at = this.#len;
    for (let k = start + 9; k < at; k++) c = t[(c ^ b[k]) & 0xff] ^ (c >>> 8);
    at = tails.tails.copyTo(i, b, at);
    c = ~tails.carry(c, i);
    for (let k = 7; k >= 0; k--) {
      b[start + k] = HEX[c & 15];
      c >>>= 4;
    }
    b[start + 8] = 32;
    b[at++] = 10;
    this.#len = at;
  }

  /** A space, then `s`. */
  #field(s: string): void {
    this.#buf[this.#len++] = 32;
    this.#text(s);
  }

  /** Makes room for an entry of a `payload`-byte payload and skips its CRC field. */
  #begin(payload: number): void {
    const need = this.#len + payload + 10;
    if (need > this.#buf.length) {
      const bigger = new Uint8Array(Math.max(need, this.#buf.length * 2));
      bigger.set(this.#buf.subarray(0, this.#len));
      this.#buf = bigger;
    }
    this.#start = this.#len;
    this.#len += 9;
  }

  #text(s: string): void {
    const b = this.#buf;
    let at = this.#len;
    for (let i = 0; i < s.length; i++) b[at++] = s.charCodeAt(i);
    this.#len = at;
  }

  /** Hashes the payload just written, fills in the CRC field, ends the line. */
  #end(): void {
    const b = this.#buf;
    const start = this.#start;
    const t = CRC_TABLES;
    const end = this.#len;
    let c = -1;
    let i = start + 9;
    for (; i + 4 <= end; i += 4) {
      c ^= b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24);
      c = t[768 + (c & 0xff)] ^ t[512 + ((c >>> 8) & 0xff)] ^ t[256 + ((c >>> 16) & 0xff)] ^
        t[c >>> 24];
    }
    for (; i < end; i++) c = t[(c ^ b[i]) & 0xff] ^ (c >>> 8);
    c = ~c;
    for (let i = 7; i >= 0; i--) {
      b[start + i] = HEX[c & 15];
      c >>>= 4;
    }
    b[start + 8] = 32;
    b[this.#len++] = 10;
  }
}

/** Tail lengths whose carry table is kept (4 KiB each); others are hashed byte by byte. */
const CARRY_TABLES_MAX = 256;

/**
 * Record entries shared by the logs of one process. An entry is `R <seq>` and the record body's
 * tail (servers/record_bytes.ts), so each log copies the tail's bytes kept for the process and
 * writes its own seq, and carries the CRC across the tail: CRC-32 is linear, so the register
 * after the tail is the register before it advanced over as many zero bytes (a table per tail
 * length: four lookups), XOR the tail's own register from 0, hashed once per tail. Same bytes in
 * every file as encoding each entry whole.
 */
export class RecordTails {
  /** Per kept tail: its CRC register from 0, and the stamp of the tail it was hashed from. */
  #crc = new Int32Array(TAIL_SLOTS);
  #hashed = new Float64Array(TAIL_SLOTS).fill(-1);
  #carry = new Map<number, Int32Array>();

  constructor(readonly tails: RecordBytes = new RecordBytes()) {}

  /** Where `r`'s tail is kept (see {@linkcode RecordBytes.find}), or -1. */
  find(r: AtFields): number {
    return this.tails.find(r);
  }

  /** The CRC register `c` (after `R <seq>`) carried across the tail kept at `i`. */
  carry(c: number, i: number): number {
    const tails = this.tails;
    const n = tails.length(i);
    const stamp = tails.stamp(i);
    if (this.#hashed[i] !== stamp) {
      const t = CRC_TABLES;
      const ring = tails.ring;
      const start = tails.start(i);
      let h = 0;
      for (let k = start; k < start + n; k++) h = t[(h ^ ring[k]) & 0xff] ^ (h >>> 8);
      this.#crc[i] = h;
      this.#hashed[i] = stamp;
    }
    let m = this.#carry.get(n);
    if (m === undefined) {
      if (this.#carry.size >= CARRY_TABLES_MAX) {
        const t = CRC_TABLES;
        for (let k = 0; k < n; k++) c = t[c & 0xff] ^ (c >>> 8);
        return c ^ this.#crc[i];
      }
      this.#carry.set(n, m = carryTable(n));
    }
    return m[c & 0xff] ^ m[256 + ((c >>> 8) & 0xff)] ^ m[512 + ((c >>> 16) & 0xff)] ^
      m[768 + (c >>> 24)] ^ this.#crc[i];
  }
}

/**
 * The linear map "advance the CRC register over `n` zero bytes" as four tables of 256: entry
 * `256k + v` is the image of byte value `v` in the register's k-th byte.
 */
function carryTable(n: number): Int32Array {
  const t = CRC_TABLES;
  const basis = new Int32Array(32);
  for (let j = 0; j < 32; j++) {
    let c = 1 << j;
    for (let k = 0; k < n; k++) c = t[c & 0xff] ^ (c >>> 8);
    basis[j] = c;
  }
  const m = new Int32Array(1024);
  for (let k = 0; k < 4; k++) {
    for (let v = 1; v < 256; v++) {
      m[256 * k + v] = m[256 * k + (v & (v - 1))] ^ basis[8 * k + 31 - Math.clz32(v & -v)];
    }
  }
  return m;
}

/** The tails of this process's record logs, used while more than one is open. */
const processTails = new RecordTails(processRecordBytes);
let logsOpen = 0;

/** What a replayed file held. */
interface Replay {
  epoch: string | undefined;
  records: Map<string, StoredRecord>;
  marks: Map<string, Mark>;
  /** Entries read (valid or not). */
  entries: number;
  /** Lines whose checksum or layout is wrong, and records that fail validation. */
  bad: number;
  /** Length of the valid prefix (a torn tail after it is cut). */
  good: number;
  /** The last entry is `C 1`: the server stopped cleanly with nothing owed. */
  clean: boolean;
}

/** Parses a seq: a positive safe integer, or undefined. */
function parseSeq(text: string): number | undefined {
  if (!INTEGER.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/** A replay of nothing yet. */
function emptyReplay(): Replay {
  return {
    epoch: undefined,
    records: new Map(),
    marks: new Map(),
    entries: 0,
    bad: 0,
    good: 0,
    clean: false,
  };
}

/**
 * Replays a record log, read in chunks of {@linkcode REPLAY_CHUNK} bytes into one reused buffer:
 * reading a 100 MB log (1M records) whole took 4-6 s here, most of it faulting in the fresh
 * buffer's pages, against 40 ms in chunks (BENCHMARKS.md, "Catch-up"). Throws NotFound.
 */
async function replayFile(path: string): Promise<Replay> {
  const out = emptyReplay();
  const fair = new FairShare(RESTORE_SLICE_MS);
  const file = await Deno.open(path);
  try {
    let buf = new Uint8Array(REPLAY_CHUNK);
    let filled = 0;
    let base = 0; // the file offset of buf[0]
    while (true) {
      // A line longer than the buffer (none is, within the limits): grow it.
      if (filled === buf.length) {
        const bigger = new Uint8Array(buf.length * 2);
        bigger.set(buf);
        buf = bigger;
      }
      const n = await file.read(buf.subarray(filled));
      if (n === null) break;
      filled += n;
      // A few hundred entries at a time, in turns (see RESTORE_SLICE_MS).
      let used = 0;
      for (let step; (step = replayLines(out, buf.subarray(used, filled), base + used)) > 0;) {
        used += step;
        const turn = fair.turn();
        if (turn !== undefined) await turn;
      }
      buf.copyWithin(0, used, filled);
      filled -= used;
      base += used;
    }
  } finally {
    file.close();
  }
  return out;
}

/**
 * Replays the whole lines of `bytes` (which start at file offset `base`), up to
 * {@linkcode REPLAY_STEP} of them, into `out`; returns how many bytes they took. Invalid entries
 * are skipped and counted; a last line without its LF is left: a torn tail (the crash came
 * mid-append) is cut, nothing after it was durable.
 */
function replayLines(out: Replay, bytes: Uint8Array, base: number): number {
  let pos = 0;
  for (let lines = 0; pos < bytes.length && lines < REPLAY_STEP; lines++) {
    const lf = bytes.indexOf(10, pos);
    if (lf === -1) break;
    const line = bytes.subarray(pos, lf);
    pos = lf + 1;
    out.good = base + pos;
    if (line.length === 0) continue;
    out.entries++;
    const payload = line.subarray(9);
    if (
      line.length < 11 || line[8] !== 32 ||
      bytesToBinary(line.subarray(0, 8)) !== crc32(payload).toString(16).padStart(8, "0")
    ) {
      out.bad++;
      continue;
    }
    const f = bytesToBinary(payload).split(" ");
    out.clean = false;
    if (f[0] === "R" && f.length === 7) {
      const seq = parseSeq(f[1]);
      const r = {
        seq: seq ?? 0,
        origin: f[2],
        diff: f[3],
        client: f[4],
        location: f[5],
        time: f[6],
        via: -1,
      };
      if (seq === undefined || validateRecord(r) === undefined) {
        out.bad++;
        continue;
      }
      const known = out.records.get(r.client);
      if (known === undefined || known.seq <= seq) out.records.set(r.client, r);
    } else if (f[0] === "M" && f.length === 4 && (f[3] === "0" || parseSeq(f[3]) !== undefined)) {
      out.marks.set(f[1], { epoch: f[2], seq: Number(f[3]) });
    } else if (f[0] === "E" && f.length === 3 && f[1] === "1") {
      out.epoch = f[2];
    } else if (f[0] === "C" && f.length === 2 && f[1] === "1") {
      out.clean = true;
    } else {
      out.bad++;
    }
  }
  return pos;
}

/** True when the records' sequence numbers ascend. */
function inSeqOrder(records: StoredRecord[]): boolean {
  for (let i = 1; i < records.length; i++) if (records[i - 1].seq > records[i].seq) return false;
  return true;
}

/** The value layouts of the Deno KV store this log replaced (read once, to import). */
type OldValue = [origin: string, diff: string, location: string, time: string, seq: number];

function decodeKvValue(client: string, value: unknown): StoredRecord | undefined {
  const f = value instanceof Uint8Array
    ? bytesToBinary(value).split(" ")
    : Array.isArray(value)
    ? value as OldValue
    : undefined;
  if (f === undefined || f.length !== 5) return undefined;
  const [origin, diff, location, time, seq] = f;
  if (![origin, diff, location, time].every((x) => typeof x === "string")) return undefined;
  const record = { client, origin, diff, location, time, seq: Number(seq), via: -1 };
  if (!Number.isSafeInteger(record.seq) || record.seq <= 0) return undefined;
  return validateRecord(record) === undefined ? undefined : record;
}

/** Reads a `<server>.kv` store of an earlier version as a replay, or undefined when none. */
async function importKv(path: string): Promise<Replay | undefined> {
  try {
    await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  const kv = await Deno.openKv(path);
  try {
    const out: Replay = {
      epoch: (await kv.get<string>(["meta", "epoch"])).value ?? undefined,
      records: new Map(),
      marks: new Map(),
      entries: 0,
      bad: 0,
      good: 0,
      // Deno KV committed each record on its own: nothing was sent that is not on disk.
      clean: true,
    };
    for await (const e of kv.list({ prefix: ["r"] }, { batchSize: 1000 })) {
      out.entries++;
      const r = typeof e.key[1] === "string" ? decodeKvValue(e.key[1], e.value) : undefined;
      if (r === undefined) out.bad++;
      else out.records.set(r.client, r);
    }
    for await (const e of kv.list<Mark>({ prefix: ["m"] })) {
      const m = e.value;
      if (
        typeof e.key[1] === "string" && typeof m?.epoch === "string" && Number.isSafeInteger(m.seq)
      ) {
        out.marks.set(e.key[1], { epoch: m.epoch, seq: m.seq });
      }
    }
    return out;
  } finally {
    kv.close();
  }
}

/**
 * Writes the entries of `head`'s payloads, then of `records` and `marks`, through `out` in chunks
 * of about {@linkcode CHUNK} bytes; returns the bytes written. `sync`: with `writeSync` (no
 * event-loop turn between chunks).
 */
async function writeRecords(
  out: EntryBuffer,
  file: Deno.FsFile,
  head: string[],
  records: RecordQueue | undefined,
  marks: readonly [string, Mark][],
  sync = false,
  tails?: RecordTails,
): Promise<number> {
  let written = 0;
  const put = async () => {
    const bytes = out.take();
    if (sync) writeAllSync(file, bytes);
    else await writeAll(file, bytes);
    written += bytes.length;
  };
  for (const payload of head) out.add(payload);
  const fields = records?.fields ?? [];
  const seqs = records?.seqs ?? [];
  for (let i = 0; i < seqs.length; i++) {
    out.entry(fields[i], seqs[i], tails);
    if (out.length >= CHUNK) await put();
  }
  for (const [peer, m] of marks) out.add(`M ${peer} ${m.epoch} ${m.seq}`);
  if (out.length > 0) await put();
  return written;
}

/** Someone waiting in `committed()` for everything queued up to `upTo`. */
interface Waiter {
  upTo: number;
  resolve(): void;
  reject(err: Error): void;
}

/**
 * The record log of one server, in `<dir>/<server>.records`.
 *
 * @example
 * ```ts
 * import { EventBus } from "./events.ts";
 * import type { Link } from "./peers.ts";
 * import { RecordStore, type StoredRecord } from "./store.ts";
 * declare const record: StoredRecord; // one the store took
 *
 * const store = new RecordStore();
 * const links: Link[] = []; // the server's links: told what they have already sent
 * const bus = new EventBus();
 * const persistence = await openLogPersistence("./data", "Hill");
 * await persistence.load(store, links, bus);
 * persistence.saved(record); // on disk within ~10 ms
 * await persistence.committed(); // it is
 * await persistence.close();
 * ```
 */
export function openLogPersistence(
  dir: string,
  server: string,
  commitMs = 10,
): Promise<Persistence> {
  return Promise.resolve(new RecordLog(dir, server, commitMs));
}

/**
 * One commit interval's tick, shared by the logs of this process: a log with something to
 * commit joins the next tick (at most one interval away, as its own timer would have been), and
 * the tick runs every joined log's commit in one macrotask. The timer runs only while some log
 * has joined.
 */
class CommitTick {
  #due = new Set<() => void>();
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly ms: number) {}

  add(commit: () => void): void {
    this.#due.add(commit);
    this.#timer ??= setTimeout(() => this.#fire(), this.ms);
  }

  delete(commit: () => void): void {
    this.#due.delete(commit);
    if (this.#due.size > 0 || this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #fire(): void {
    this.#timer = undefined;
    const due = [...this.#due];
    this.#due.clear();
    for (const commit of due) commit();
  }
}

const commitTicks = new Map<number, CommitTick>();

/** The process's tick for commit interval `ms`. */
function commitTick(ms: number): CommitTick {
  let tick = commitTicks.get(ms);
  if (tick === undefined) commitTicks.set(ms, tick = new CommitTick(ms));
  return tick;
}

class RecordLog implements Persistence {
  readonly #dir: string;
  readonly #server: string;
  readonly #path: string;
  readonly #commitMs: number;
  #file: Deno.FsFile | undefined;
  /** `<server>.lock`, held exclusively while the log is open ({@linkcode RecordLog.#claim}). */
  #lock: Deno.FsFile | undefined;
  /** Bytes of the file that are known good: appends start here, a failed one is cut back to it. */
  #size = 0;
  /**
   * The file's offset is `#size`: true after a whole append or a compaction, false after a load
   * (offset 0) and after a failed append (its bytes were cut off behind the offset). A commit
   * seeks only then, not every time (the seek was one more async op per commit).
   */
  #atEnd = false;
  #entries = 0;
  #epoch = "";
  /** The store's epoch is not on disk yet (a fresh one after an unclean stop): the next commit writes it. */
  #epochOwed = false;
  /** The log ends with a clean stop now (nothing written after it). */
  #cleanMarked = false;
  #store: RecordStore | undefined;
  #links: readonly Link[] = [];
  #bus: EventBus | undefined;
  /**
   * Records queued for the next commit, in the order they were stored. A client's older records
   * among them are skipped when written (`RecordStore.superseded`): one `Map.set` per record to
   * keep only the newest cost a catch-up more than the check. No view per record is kept
   * ({@linkcode RecordQueue}).
   */
  #pending = new RecordQueue();
  #pendingMarks = new Map<string, Mark>();
  /** Marks whose records are synced: the next append writes them. */
  #readyMarks = new Map<string, Mark>();
  /** The marks on disk (what compaction copies: never a mark past what is durable). */
  #durableMarks = new Map<string, Mark>();
  /** Records queued so far, and how many of them are on disk. */
  #queued = 0;
  #durable = 0;
  #waiters: Waiter[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Writes run one at a time, in this chain. */
  #chain: Promise<void> = Promise.resolve();
  /** A write is chained and has not started. */
  #writeQueued = false;
  #failing = false;
  #backoff = new Backoff(RETRY_MIN_MS, RETRY_MAX_MS);
  #lastReport = -Infinity;
  #closed = false;
  /** Where appends and compactions encode their entries (they run one at a time). */
  #out = new EntryBuffer();
  /** This log syncs through the process's sync thread (servers/disk_sync.ts) until closed. */
  #usesSync = false;
  /** Waiting for the process's next commit tick (see {@linkcode commitTick}). */
  #ticking = false;
  readonly #onTick = () => {
    this.#ticking = false;
    this.#commitNow();
  };

  get writable(): boolean {
    return !this.#failing;
  }

  constructor(dir: string, server: string, commitMs: number) {
    this.#dir = dir;
    this.#server = server;
    this.#path = `${dir}/${server}.records`;
    this.#commitMs = commitMs;
  }

  async load(store: RecordStore, links: readonly Link[], bus: EventBus): Promise<void> {
    this.#bus = bus;
    // A restart in the same process: write what is owed, then replay the file afresh.
    if (this.#file !== undefined) await this.#closeForRestart();
    await Deno.mkdir(this.#dir, { recursive: true });
    await this.#claim();
    if (!this.#usesSync) {
      this.#usesSync = true;
      diskSync.use();
      logsOpen++;
    }
    const { data, fromKv } = await this.#read();
    const records = [...data.records.values()];
    // The log is written in sequence order: only records updated since the last compaction
    // are out of it (sorting 1M records took ~0.5 s).
    if (!inSeqOrder(records)) records.sort((a, b) => a.seq - b.seq);
    // In turns: in `start` the other servers of this process go on meanwhile (a restart of one
    // with 50,000 records held the event loop 1.4 s in one piece here).
    const fair = new FairShare(RESTORE_SLICE_MS);
    for (const r of records) {
      store.restore(r);
      const turn = fair.turn();
      if (turn !== undefined) await turn;
    }
    this.#store = store;
    this.#links = links;
    const lost = this.#adoptEpochAndMarks(data, fromKv, store, links);
    this.#epoch = store.epoch;
    this.#entries = data.entries;
    this.#size = data.good;
    // An import, or a file with entries to drop: write it afresh.
    if (fromKv || lost || this.#compactDue()) await this.#compact();
    if (this.#file === undefined) {
      // The imported records are only in memory until a compaction succeeds: no empty log may
      // take the old store's place.
      if (fromKv) throw new Error(`${this.#server}: cannot write ${this.#path}`);
      this.#file = await Deno.open(this.#path, { read: true, write: true, create: true });
      // A torn tail is cut, so the next append does not extend a broken line.
      if ((await this.#file.stat()).size !== this.#size) await this.#file.truncate(this.#size);
      this.#atEnd = false;
    }
    if (data.clean) {
      // The clean stop vouches for the stop before this start only: records are flooded before
      // their commit, so a kill before our first commit must not find it still last. The epoch
      // goes after it now, synced, before the server takes a record.
      this.#epochOwed = true;
      await this.#commitNow();
      if (this.#epochOwed) {
        // Not written (a full disk): a fresh epoch then, which the commits that do get written
        // carry; a replay of this file alone finds the old one, which the neighbours no longer
        // hold marks for either way.
        store.epoch = freshEpoch();
        this.#epoch = store.epoch;
      }
    }
  }

  /** Before a restart's replay: what is owed written, the file closed, every queue emptied. */
  async #closeForRestart(): Promise<void> {
    await this.flush();
    this.#file!.close();
    this.#file = undefined;
    this.#pending = new RecordQueue();
    this.#pendingMarks.clear();
    this.#readyMarks.clear();
    this.#failing = false;
    this.#backoff.reset();
    this.#fail(new Error("the server restarted"));
  }

  /** The record log replayed, else the old Deno KV store imported (`fromKv`), else nothing. */
  async #read(): Promise<{ data: Replay; fromKv: boolean }> {
    try {
      return { data: await replayFile(this.#path), fromKv: false };
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) {
        this.#report("disk-read", `cannot read ${this.#path}: ${(err as Error).message}`);
        throw err;
      }
    }
    let data: Replay | undefined;
    try {
      data = await importKv(`${this.#dir}/${this.#server}.kv`);
    } catch (err) {
      this.#report("disk-read", `cannot import ${this.#server}.kv: ${(err as Error).message}`);
      throw err;
    }
    return { data: data ?? emptyReplay(), fromKv: data !== undefined };
  }

  /**
   * The store's epoch and the links' marks from a replay, or none when something was lost (a
   * fresh epoch then: returns true); an unclean stop keeps the marks but owes a fresh epoch.
   */
  #adoptEpochAndMarks(
    data: Replay,
    fromKv: boolean,
    store: RecordStore,
    links: readonly Link[],
  ): boolean {
    // Records or marks without the epoch they were written under: the file lost its head. A
    // clean stop alone is nothing lost (what an empty log's stop left before it wrote an epoch).
    const lost = data.bad > 0 ||
      (data.epoch === undefined && (data.records.size > 0 || data.marks.size > 0));
    // Records are flooded before their commit, so a server killed (or a disk that failed) with
    // records owed may have sent its neighbours records it no longer has, and would number its
    // next records with their sequence numbers: a neighbour's mark says it has them, so it would
    // never get the new ones, nor send back the lost ones (adv10b #1). A fresh epoch makes every
    // neighbour resend its whole log to us (skipping nothing) and take ours from the start.
    const unclean = !lost && data.entries > 0 && !data.clean;
    if (lost) {
      // Something on disk was unreadable, and marks written after it claim it arrived. A fresh
      // epoch and no marks make every neighbour resend its whole log both ways at the next
      // SYNC, so whatever the skipped entries held comes back from the herd.
      const where = fromKv ? `${this.#server}.kv` : this.#path;
      this.#report(
        "record-invalid",
        data.bad > 0
          ? `${data.bad} unreadable or invalid stored entr${
            data.bad === 1 ? "y" : "ies"
          } in ${where} skipped; resyncing fully with the neighbours`
          // Whole entries, but the epoch they were written under is gone (the file lost its head).
          : `${where} holds records or marks but no epoch entry; resyncing fully with the neighbours`,
      );
      this.#durableMarks = new Map();
      return true;
    }
    if (unclean) {
      // The store's own fresh epoch stays; the next commit writes it. Marks stay: they are
      // about the neighbours' epochs, and were written only once what they cover was on disk.
      this.#epochOwed = true;
      this.#report(
        "unclean-stop",
        `${this.#path} does not end with a clean stop (killed, or records owed at the stop): ` +
          `a fresh epoch, so the neighbours resend their logs and take ours again`,
      );
    } else if (data.epoch !== undefined) store.epoch = data.epoch;
    this.#durableMarks = data.marks;
    for (const link of links) {
      const m = data.marks.get(link.peer);
      if (m !== undefined) link.mark = { ...m };
    }
    return false;
  }

  saved(record: StoredRecord): void {
    this.#pending.push(record);
    this.#queued++;
    if (this.#pending.length >= EARLY_COMMIT && !this.#failing) this.#commitNow();
    else this.#schedule();
  }

  committed(): Promise<void> {
    const upTo = this.#queued;
    if (this.#durable >= upTo) return Promise.resolve();
    if (this.#closed) return Promise.reject(new Error("the store is closed"));
    // Writes are failing (a full disk): say so at once rather than after the next failed retry,
    // so a pipelining --sync-ack client gets its "?" replies promptly. The record stays queued.
    if (this.#failing) return Promise.reject(new Error("the disk cannot be written now"));
    return new Promise((resolve, reject) => {
      this.#waiters.push({ upTo, resolve, reject });
      this.#schedule();
    });
  }

  markMoved(link: Link): void {
    this.#pendingMarks.set(link.peer, { ...link.mark });
    this.#schedule();
  }

  epochRenewed(epoch: string): void {
    this.#epoch = epoch;
    this.#epochOwed = true;
    this.#commitNow();
  }

  async flush(): Promise<void> {
    await this.#commitNow();
    // The marks that commit covered go in one more.
    if (this.#readyMarks.size > 0 && !this.#failing) await this.#commitNow();
  }

  async close(): Promise<void> {
    await this.stopped();
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#leaveTick();
    if (this.#usesSync) {
      this.#usesSync = false;
      diskSync.release(this.#path);
      logsOpen--;
    }
    this.#fail(new Error("the store is closed"));
    this.#file?.close();
    this.#file = undefined;
    // Closing the descriptor lets go of the lock (as the kernel does when a process dies).
    this.#lock?.close();
    this.#lock = undefined;
  }

  async stopped(): Promise<void> {
    await this.flush();
    if (this.#pending.length > 0) {
      // Said where the operator sees it even when the log is on the same full disk (adv10b #5).
      const message =
        `stopping with ${this.#pending.length} record(s) not on disk (${this.#path} ` +
        `cannot be written): the next start takes a fresh epoch, and the neighbours that got ` +
        `them give them back`;
      this.#report("disk-write", message);
      if (this.#bus !== undefined) console.error(`${this.#server}: ${message}`);
    }
    await this.#markClean();
  }

  /**
   * Takes `<server>.lock` in the data dir, exclusively, for as long as this log is open: two
   * processes serving one name from one data dir appended to one file with colliding sequence
   * numbers, and each lost the other's acknowledged records after a restart. The lock file is
   * never replaced (the log is, by compaction), and a killed holder's lock goes with it. A lock
   * held is tried again for {@linkcode CLAIM_WAIT_MS} (a stopping process lets it go last).
   */
  async #claim(): Promise<void> {
    if (this.#lock !== undefined) return;
    const path = `${this.#dir}/${this.#server}.lock`;
    const lock = await Deno.open(path, { read: true, write: true, create: true });
    let mine = false;
    try {
      const until = performance.now() + CLAIM_WAIT_MS;
      while (!(mine = await lock.tryLock(true)) && performance.now() < until) {
        await new Promise((r) => setTimeout(r, CLAIM_STEP_MS));
      }
    } finally {
      if (!mine) lock.close();
    }
    if (!mine) {
      const error =
        `${this.#server}: ${this.#path} is in use by another process (${path} is locked)`;
      this.#report("disk-read", error);
      throw new Error(error);
    }
    this.#lock = lock;
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#ticking || this.#closed || this.#file === undefined) {
      return;
    }
    if (this.#failing) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#commitNow();
      }, this.#backoff.current);
      return;
    }
    // The logs of this process commit on one shared tick, so their syncs reach the sync thread
    // in one message (one wake-up) instead of one each at scattered times.
    this.#ticking = true;
    commitTick(this.#commitMs).add(this.#onTick);
  }

  #leaveTick(): void {
    if (!this.#ticking) return;
    this.#ticking = false;
    commitTick(this.#commitMs).delete(this.#onTick);
  }

  #commitNow(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#leaveTick();
    // A write that has not started yet takes everything queued by then: one is enough.
    if (this.#writeQueued) return this.#chain;
    this.#writeQueued = true;
    this.#chain = this.#chain.then(() => this.#write()).catch((err) => this.#writeBug(err));
    return this.#chain;
  }

  /**
   * `#write` handles the disk's failures itself; one that throws all the same is a bug. It costs
   * that commit (reported, its waiters failed, retried after the backoff), never the commits after
   * it: the chain stayed rejected, so every flush failed and the commit timers' own (nobody
   * awaits them) were unhandled rejections.
   */
  #writeBug(err: unknown): void {
    this.#writeQueued = false;
    const error = err instanceof Error ? err : new Error("a commit threw a non-Error value");
    this.#report("internal", `record log ${this.#path}: commit failed: ${error.message}`);
    this.#fail(error);
    if (this.#closed || this.#pending.length === 0) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#commitNow();
    }, this.#backoff.next());
  }

  /** One group commit: append what is queued, then fdatasync. Never throws. */
  async #write(): Promise<void> {
    this.#writeQueued = false;
    const file = this.#file;
    if (file === undefined) return;
    const upTo = this.#queued;
    const store = this.#store;
    const records = this.#pending.take(
      store === undefined ? undefined : (fields, seq) => store.supersededAt(fields, seq),
    );
    // Marks are written one commit after the records they cover: only once those are synced, so
    // no crash or power cut can leave a mark on disk without its records.
    const marks = [...this.#readyMarks];
    const covered = [...this.#pendingMarks];
    if (records.length + marks.length + covered.length === 0 && !this.#epochOwed) {
      return this.#wake(upTo);
    }
    this.#readyMarks = new Map();
    this.#pendingMarks = new Map();
    const started = performance.now();
    try {
      if (!this.#atEnd) file.seekSync(this.#size, Deno.SeekMode.Start);
      this.#atEnd = false;
      const header = this.#size === 0;
      const epoch = this.#epoch;
      // Written synchronously into the page cache (a few KiB per 10 ms): an async write was two
      // more ops per commit on the blocking pool, each dup'ing and closing the descriptor. The
      // fdatasync that makes it durable runs off the main thread (with more than one log in the
      // process, on its sync thread: servers/disk_sync.ts).
      const head = header || this.#epochOwed ? [`E 1 ${epoch}`] : [];
      // Each record's tail encoded once for the process's logs (not in a `server` process:
      // nothing to share there, and a catch-up would only fill the cache).
      const tails = logsOpen > 1 ? processTails : undefined;
      const written = await writeRecords(this.#out, file, head, records, marks, true, tails);
      await diskSync.sync(this.#path, file);
      this.#size += written;
      this.#atEnd = true;
      this.#entries += records.length + marks.length + head.length;
      this.#epochOwed = false;
      this.#cleanMarked = false;
      for (const [peer, m] of marks) this.#durableMarks.set(peer, m);
      this.#readyMarks = new Map(covered);
      if (covered.length > 0) this.#schedule();
      if (this.#failing) {
        this.#failing = false;
        this.#lastReport = -Infinity;
      }
      this.#backoff.reset();
      this.#committedEvent(records.length, started, true);
      this.#wake(upTo);
    } catch (err) {
      // Requeue before anything newer (what it superseded is skipped then), cut the partial
      // append off, and retry later.
      this.#pending.requeue(records);
      this.#readyMarks = new Map(marks);
      for (const [peer, m] of covered) {
        if (!this.#pendingMarks.has(peer)) this.#pendingMarks.set(peer, m);
      }
      await file.truncate(this.#size).catch(() => {});
      this.#failing = true;
      this.#committedEvent(records.length, started, false);
      if (performance.now() - this.#lastReport >= REPORT_EVERY_MS) {
        this.#lastReport = performance.now();
        this.#report(
          "disk-write",
          `cannot write ${this.#path}: ${
            (err as Error).message
          }; ${this.#pending.length} record(s) ` +
            `owed, retrying (--sync-ack IAMATs are answered "?" meanwhile)`,
        );
      }
      this.#fail(err as Error);
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#commitNow();
      }, this.#backoff.next());
      return;
    }
    if (this.#compactDue()) await this.#compact();
  }

  /**
   * Ends the log with `C 1` when nothing is owed (every record and mark on disk), durably: the
   * next start keeps the epoch. Otherwise, or when it cannot be written, the next start takes a
   * fresh one (see `load`).
   */
  async #markClean(): Promise<void> {
    const file = this.#file;
    const owed = this.#pending.length > 0 || this.#readyMarks.size > 0 ||
      this.#pendingMarks.size > 0 || this.#epochOwed || this.#durable < this.#queued;
    if (file === undefined || this.#failing || owed || this.#cleanMarked) return;
    try {
      if (!this.#atEnd) file.seekSync(this.#size, Deno.SeekMode.Start);
      this.#atEnd = false;
      // An empty log (stopped before its first record) gets its epoch first: `C 1` alone read
      // as entries without an epoch, a log that had lost something, at the next start.
      const head = this.#size === 0 ? [`E 1 ${this.#epoch}`, CLEAN_STOP] : [CLEAN_STOP];
      const written = await writeRecords(this.#out, file, head, undefined, [], true);
      await diskSync.sync(this.#path, file);
      this.#size += written;
      this.#atEnd = true;
      this.#entries += head.length;
      this.#cleanMarked = true;
    } catch {
      // Not written: the next start resyncs fully, which is always safe.
      await file.truncate(this.#size).catch(() => {});
    }
  }

  /** Resolves the waiters covered by a write that made everything up to `upTo` durable. */
  #wake(upTo: number): void {
    if (upTo > this.#durable) this.#durable = upTo;
    const still: Waiter[] = [];
    for (const w of this.#waiters) {
      if (w.upTo <= this.#durable) w.resolve();
      else still.push(w);
    }
    this.#waiters = still;
  }

  /** Rejects every waiter: the disk cannot take their records now. */
  #fail(err: Error): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(err);
  }

  #compactDue(): boolean {
    const live = (this.#store?.size ?? 0) + this.#links.length + 1;
    return this.#entries > 2 * live + COMPACT_SLACK;
  }

  /**
   * Rewrites the file with the live records, the durable marks and the epoch: into a temp file,
   * fsync, rename over the log, fsync the directory. Written in chunks, so the event loop runs
   * between them; appends wait in the chain meanwhile. On failure the old file stays in use.
   */
  async #compact(): Promise<void> {
    const tmpPath = `${this.#path}.tmp`;
    let tmp: Deno.FsFile | undefined;
    try {
      // Whatever sits at the temp path (a crash's leftover, or a planted symlink) is unlinked,
      // not opened: the new file is created exclusively, so no write goes through a link.
      await Deno.remove(tmpPath).catch(() => {});
      tmp = await Deno.open(tmpPath, { read: true, write: true, createNew: true });
      const records = new RecordQueue();
      const held = [...(this.#store?.values() ?? [])].sort((a, b) => a.seq - b.seq);
      for (const r of held) records.push(r);
      const marks = [...this.#durableMarks];
      const epoch = this.#epoch;
      const written = await writeRecords(this.#out, tmp, [`E 1 ${epoch}`], records, marks);
      await tmp.syncData();
      await Deno.rename(tmpPath, this.#path);
      await syncDir(this.#dir);
      this.#file?.close();
      this.#file = tmp;
      tmp = undefined;
      this.#size = written;
      this.#atEnd = true;
      this.#entries = 1 + records.length + marks.length;
      this.#cleanMarked = false;
    } catch (err) {
      tmp?.close();
      await Deno.remove(tmpPath).catch(() => {});
      this.#report("disk-write", `cannot compact ${this.#path}: ${(err as Error).message}`);
    }
  }

  /** A `persist.commit` event: one group commit, its records and how long it took. */
  #committedEvent(records: number, started: number, ok: boolean): void {
    const bus = this.#bus;
    if (bus === undefined || !bus.active) return;
    const seconds = (performance.now() - started) / 1000;
    bus.emit({ kind: "persist.commit", t: Date.now(), server: this.#server, records, seconds, ok });
  }

  #report(reason: ErrorReason, message: string): void {
    const event = { kind: "error" as const, t: Date.now(), server: this.#server, reason, message };
    if (this.#bus !== undefined) this.#bus.emit(event);
    else console.error(`${this.#server}: ${message}`);
  }
}

/** fsyncs a directory, so a rename in it is durable (best effort where unsupported). */
async function syncDir(dir: string): Promise<void> {
  let d: Deno.FsFile | undefined;
  try {
    d = await Deno.open(dir, { read: true });
    await d.sync();
  } catch {
    // not supported here: the rename is still atomic, only its durability waits for the FS
  } finally {
    d?.close();
  }
}
