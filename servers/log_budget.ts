/**
 * How much of a server's log invalid lines may take. Every invalid line is logged three times over
 * (`IN`, `OUT ? <line>`, `INVALID`): a client streaming `x\n` made about 60 times its bytes in log,
 * and with escaped binary bytes (four log bytes each) more, so one connection could fill a disk.
 * A client's stale or duplicate IAMAT is as cheap to send again and again, and logged three times
 * too (`IN`, `DROP`, `OUT AT ...`: ~6 log bytes per byte received), so it is charged the same way;
 * a new record is not (it changes the herd, and its log lines are the audit trail).
 *
 * Invalid lines (and dropped IAMATs) draw on two token buckets, measured in log bytes they would
 * cost: the connection's (a client that sends a few bad lines is logged in full) and the
 * server's (many connections at once). A connection that overdraws either is muted: its `IN`,
 * `OUT`, `INVALID` and `DROP` lines are counted, not written, until its emptied bucket has
 * refilled to half (8 s); then, or when it disconnects, one line says how many were left out. Clients that send only valid commands
 * never draw on the buckets and are never muted. Metrics and the dashboard still see every event:
 * only the log file is spared.
 *
 * The clock is the events' own time (`t`), so the same events always give the same log.
 *
 * @module
 */

import type { HerdEvent } from "./events.ts";
import type { AtFields } from "./record.ts";

/** A connection's bucket: this many log bytes at once, refilled at {@linkcode CONN_RATE}. */
export const CONN_BURST = 16 * 1024;
/** Log bytes per second a connection's invalid lines may take once its burst is spent. */
export const CONN_RATE = 1024;
/** The server's bucket, shared by all its connections' invalid lines. */
export const SERVER_BURST = 1024 * 1024;
/** Log bytes per second all invalid lines of one server may take once its burst is spent. */
export const SERVER_RATE = 64 * 1024;
/** What an invalid line costs beyond twice its length: the three lines' stamps and words. */
const LINE_COST = 120;

/** The log bytes of a dropped IAMAT: its `IN`, `DROP` and `OUT` lines each carry its AT fields. */
function dropCost(r: AtFields): number {
  const at = r.origin.length + r.diff.length + r.client.length + r.location.length + r.time.length;
  return 3 * (at + 8) + LINE_COST;
}
/** Connections tracked before idle, unmuted ones are forgotten (handed-over sockets never disconnect). */
const MAX_TRACKED = 4096;

/** A note the log writes about muting: when a connection is muted, and when it is heard again. */
export interface MuteNote {
  kind: "mute" | "unmute";
  conn: number;
  /** Lines left out while it was muted (0 on `mute`). */
  skipped: number;
}

/** Where {@linkcode LogBudget.admit} hands a mute note, with the time of the event that caused it. */
export type Note = (n: MuteNote, t: number) => void;

/** A token bucket in log bytes. */
class Bucket {
  tokens: number;
  #at: number;
  constructor(readonly burst: number, readonly rate: number, now: number) {
    this.tokens = burst;
    this.#at = now;
  }
  /** Tokens now, after refilling for the time since the last look. */
  refill(now: number): number {
    if (now > this.#at) {
      this.tokens = Math.min(this.burst, this.tokens + (now - this.#at) * this.rate / 1000);
      this.#at = now;
    }
    return this.tokens;
  }
}

interface Conn {
  bucket: Bucket;
  muted: boolean;
  skipped: number;
}

/**
 * One server's log budget for invalid lines.
 *
 * @example
 * ```ts
 * const budget = new LogBudget();
 * const notes: MuteNote[] = [];
 * const bad = { kind: "invalid", t: 0, server: "Hill", conn: 1, line: "x".repeat(9000), verb: "other", reason: "unknown-verb" } as const;
 * budget.admit(bad, (n) => notes.push(n)); // true: the first is logged
 * budget.admit(bad, (n) => notes.push(n)); // false: over the connection's 16 KiB, muted
 * notes; // [{ kind: "mute", conn: 1, skipped: 0 }]
 * ```
 */
export class LogBudget {
  #server: Bucket | undefined;
  #conns = new Map<number, Conn>();

  /**
   * Whether `e`'s log line is written. `note` is called first with a mute or unmute note to
   * write before it, if there is one, and the event's time (one callback serves every event).
   */
  admit(e: HerdEvent, note: Note): boolean {
    switch (e.kind) {
      case "line.in":
      case "reply.out":
        return this.#heard(e.conn, e.t, note);
      case "invalid":
        return this.#invalid(e.conn, e.t, 2 * e.line.length + LINE_COST, note);
      case "location.dropped":
        // A client's stale or duplicate IAMAT; a peer's drops are the herd's own traffic.
        return e.conn === undefined ? true : this.#invalid(e.conn, e.t, dropCost(e.record), note);
      case "client.disconnect": {
        const c = this.#conns.get(e.conn);
        if (c === undefined) return true;
        this.#conns.delete(e.conn);
        if (c.muted) note({ kind: "unmute", conn: e.conn, skipped: c.skipped }, e.t);
        return true;
      }
      default:
        return true;
    }
  }

  /** A line of a connection's chatter: written unless it is muted (and stays so). */
  #heard(conn: number, t: number, note: Note): boolean {
    const c = this.#conns.get(conn);
    if (c === undefined || !c.muted) return true;
    if (c.bucket.refill(t) >= c.bucket.burst / 2) {
      c.muted = false;
      note({ kind: "unmute", conn, skipped: c.skipped }, t);
      c.skipped = 0;
      return true;
    }
    c.skipped++;
    return false;
  }

  /** An invalid line (or dropped IAMAT): charged to both buckets; overdrawing either mutes. */
  #invalid(conn: number, t: number, cost: number, note: Note): boolean {
    const server = this.#server ??= new Bucket(SERVER_BURST, SERVER_RATE, t);
    let c = this.#conns.get(conn);
    if (c === undefined) {
      if (this.#conns.size >= MAX_TRACKED) this.#forgetQuiet(t);
      c = { bucket: new Bucket(CONN_BURST, CONN_RATE, t), muted: false, skipped: 0 };
      this.#conns.set(conn, c);
    } else if (c.muted && !this.#heard(conn, t, note)) {
      // Still muted: what it sends now is not charged, so it is heard again once its bucket refills.
      return false;
    }
    server.refill(t);
    c.bucket.refill(t);
    if (c.bucket.tokens < cost || server.tokens < cost) {
      // Muted with an empty bucket: heard again after half a burst's refill, whatever was left.
      c.bucket.tokens = 0;
      c.muted = true;
      c.skipped = 1;
      note({ kind: "mute", conn, skipped: 0 }, t);
      return false;
    }
    c.bucket.tokens -= cost;
    server.tokens -= cost;
    return true;
  }

  /** Forgets unmuted connections whose buckets are full again: they owe nothing. */
  #forgetQuiet(t: number): void {
    for (const [id, c] of this.#conns) {
      if (!c.muted && c.bucket.refill(t) >= c.bucket.burst) this.#conns.delete(id);
    }
  }
}
