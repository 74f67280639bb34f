/**
 * Links to neighbours: one long-lived connection per link (TCP or TLS; in memory between two
 * servers of one process, servers/memory_conn.ts), authenticated both ways with the herd
 * secret, carrying records in batches, kept alive with heartbeats, redialled with capped
 * exponential backoff and jitter, and reconciled (catch-up) every time it comes up.
 *
 * Each link is a cursor into the server's change log (`store.ts`). Flooding a new record and
 * catching up after a partition are the same loop: send every record after the cursor that did
 * not come from this peer. The peer remembers the last sequence number it got from us (its
 * "mark") and tells us at link-up, so only what it missed is sent. The messages are formatted
 * and parsed in wire.ts; docs/protocol.md describes them.
 *
 * Who dials: both ends, whenever the link is down, so a server that comes back is linked as
 * soon as it listens, whoever sorts first. One connection per link, chosen the same at both
 * ends: the server whose name sorts first refuses (`HERD2 BUSY`) a neighbour's dial while its
 * own dial is in flight or while its own connection is up; every completed handshake replaces
 * the link's older connection (the other end just chose it too).
 *
 * @module
 */

import type { ErrorReason, EventBus, LinkStats } from "./events.ts";
import { RttProbe } from "./link_stats.ts";
import {
  type AtFields,
  parseLocation,
  sameRecord,
  validateRecord,
  validFieldsAt,
} from "./record.ts";
import type { HerdAuth } from "./auth.ts";
import { dialHandshake } from "./handshake.ts";
import { LinkTlsError } from "./tls.ts";
import { Buffer } from "node:buffer";
import { binaryAt, binaryEquals, binaryToBytes, LineSplitter, type SplitLine } from "./lines.ts";
import {
  CAUGHTUP,
  DIGEST,
  DIGESTS_LINE,
  encodeRecords,
  formatCaughtUp,
  formatDigest,
  formatSkip,
  formatSync,
  formatTree,
  GO,
  GO_LINE,
  HOLD,
  HOLD_LINE,
  parseLinkLine,
  PING,
  PING_LINE,
  PONG,
  PONG_LINE,
  PONGS_LINE,
  RECEIPT,
  RECORD,
  recordFieldsAt,
  SKIP,
  SYNC,
  type Sync,
  TREE,
  TREES_LINE,
  WARN,
} from "./wire.ts";
import { recordFields, type RecordStore, SKIP_NONE, type StoredRecord } from "./store.ts";
import { closeQuietly, writeAll } from "./io.ts";
import { withTimeout } from "./timeout.ts";
import { Backoff, jittered } from "./backoff.ts";
import { FairShare } from "./fair.ts";
import { MAX_PEER_LINE } from "./limits.ts";
import { type ReceiptCountdown, ReceiptQueue, ReceiptWaiters } from "./receipts.ts";
import { ReceiptLag } from "./receipt_lag.ts";
import { LineDelay, type LinkChange, type LinkSettings, NORMAL_LINK } from "./link_control.ts";
import {
  bucketCount,
  BucketDigest,
  type DigestPart,
  DigestReader,
  type MatchedBuckets,
} from "./digest.ts";
import type { LinkOptions } from "./link_options.ts";
import { errText } from "./text.ts";

export { DEFAULT_LINK_OPTIONS, type LinkOptions } from "./link_options.ts";

/**
 * A link whose live records wait this long for any receipt is not fit for the flood's trees
 * (`Link.treeReady`): a black-holed path is seen in about a second, not the heartbeat's 3 s, and
 * an overloaded herd (receipts late beyond --receipt-wait-ms, not stalled) keeps its trees.
 */
const STALL_MS = 1000;
/**
 * ...and one whose oldest unreceipted live record has waited this long: a path that receipts,
 * but slower than records come, kept them waiting 2-3.6 s and more where the full flood went
 * round it (review16), and a lag past the 5 s window the turn to the full flood sends again
 * could lose what the trees skipped if the slow relay then died. Well above what an overloaded
 * but working herd lags (receipts late by tens to hundreds of ms), so load alone does not turn
 * the herd to the full flood and its re-send.
 */
const LAG_MS = 3000;
/** Longest our catch-up stream waits for a peer's answer (`GO`) or, after `HOLD`, its `DIGEST`. */
const HOLD_MAX_MS = 60_000;
/** Skipped-record reports a link makes at once (then one a second; see `Link.#skipped`). */
const SKIP_REPORTS = 100;
/** Longest a digest after a `HOLD` waits for the record log's write of what we hold (#digestDue). */
const DIGEST_WRITE_WAIT_MS = 2_000;

/** What a link needs from the server that owns it. */
export interface LinkHost {
  readonly name: string;
  readonly store: RecordStore;
  /** The store's head when it was loaded at this start (records numbered since came later). */
  readonly loadHead?: number;
  /**
   * A peer holds records of this store's epoch that the store does not: take a fresh epoch and
   * bring every link back up with it (see `Link.#onSync`). False when it did not (renewed once
   * since the start already: the claim is false).
   */
  renewEpoch?(peer: string, mark: number): boolean;
  readonly bus: EventBus;
  readonly auth: HerdAuth;
  /**
   * Applies records that arrived on a link (store, events, flood onwards). Returns, per record,
   * what its receipt waits for (the onward links' receipts of a record new here), if anything.
   */
  receive(
    records: PeerRecord[],
    link: Link,
    known?: readonly AtFields[],
  ): (ReceiptCountdown | undefined)[];
  /** Whether this server sends receipts (`A` lines) for what it reads (--receipt-wait-ms > 0). */
  readonly receipts: boolean;
  /** Called when a link's mark (what it has received) advances, for persistence. */
  markAdvanced?(link: Link): void;
  /**
   * The newest record that must not wait behind a catch-up (a client's, or one from a link past
   * its catch-up); absent: none waits. See `Link.#waitsForPeer`.
   */
  readonly liveSeq?: number;
  /** The newest record stored from a client (absent: none waits for a HOLD's answer). */
  readonly clientSeq?: number;
  /**
   * A link's catch-up stream to us ended: `complete` at its CAUGHTUP, not when it broke off
   * (link down).
   */
  catchUpEnded?(link: Link, complete: boolean): void;
  /**
   * A dial of `link` failed (the neighbour is away, or refused us). `inconclusive`: its
   * handshake failed without saying the other end is not that neighbour (handshake.ts).
   */
  dialFailed?(link: Link, inconclusive: boolean): void;
  /**
   * Whether a link other than `link` is up and receiving a catch-up stream (one we did not ask
   * to `HOLD`) that should bring at least `min` records.
   */
  catchUpElsewhere?(link: Link, min: number): boolean;
  /**
   * Resolves once the records stored so far are written to the record log (their commit, then
   * their marks'); undefined without one. A digest after a `HOLD` waits for it.
   */
  recordsWritten?(): Promise<void> | undefined;
  /**
   * The store of neighbour `peer` when it runs in this process (`start`), else undefined: what it
   * holds is known without asking, and not sent (see `Link.#withoutHeld`).
   */
  peerStore?(peer: string): RecordStore | undefined;
  /**
   * Opens a connection to a neighbour (TLS links); without it, plain TCP to its port. `signal`
   * aborts the TCP connect (a dial into a cut must not wait out the kernel's SYN retries).
   */
  connectPeer?(peer: string, signal?: AbortSignal): Promise<Deno.Conn>;
  /**
   * Our config's topology hash (flood_tree.ts), announced to peers that know `TREE`; absent: we
   * never use the trees (every record floods on every link).
   */
  readonly treeHash?: string;
  /**
   * The origins whose records `link` does not carry now (its peer is not our child in their
   * trees, the herd is healthy and the link agrees on the trees), or undefined: flood them all.
   */
  treeSkips?(link: Link): ReadonlySet<string> | undefined;
  /** Something that `Link.treeReady` depends on changed (up, down, caught up, TREE, cut). */
  floodChanged?(link: Link): void;
  /** A `WARN` line arrived on `link`. */
  warned?(server: string, n: number, link: Link): void;
}

/** A record read from a link, with the coordinates its validation already parsed. */
export interface PeerRecord extends AtFields {
  lat: number;
  lng: number;
  /** Its strings were decoded from bytes: no copy needed to keep them (record_table.ts). */
  flat?: boolean;
}

/** The coordinates of a duplicate: it is not stored again, so they are never parsed. */
const NOT_PARSED = { lat: 0, lng: 0 };
/** A connection that read within this long is live: a new one replacing it counts (`#keepLive`). */
const TWIN_LIVE_MS = 1500;
/** This many replacements of a live connection within TWIN_WINDOW_MS: two processes, one name. */
const TWIN_REPLACEMENTS = 3;
const TWIN_WINDOW_MS = 10_000;
/** How long the live connection is then kept, doubling up to the max while it goes on. */
const TWIN_HOLD_MS = 10_000;
const TWIN_HOLD_MAX_MS = 60_000;

/** `R`: the first byte of the lines a link reads from its read buffer's bytes (#onRecordBytes). */
const RECORD_BYTE = 0x52;
/** Where an `R` line's fields lie ({@linkcode recordFieldsAt}); one for every link: used at once. */
const FIELD_AT = new Int32Array(8);
/** Origins (server names) a link remembers to take an `R` line's origin without decoding it. */
const ORIGINS_KEPT = 8;
/** Largest record batch buffer a link keeps for its next writes (bigger ones are one-offs). */
const MAX_BATCH_BUF = 64 * 1024;

/** What one read's lines add up to: records to store, and what to receipt, in order. */
interface Intake {
  batch?: PeerRecord[];
  /** Records of a catch-up stream we hold byte for byte: counted, not offered to the store. */
  known?: AtFields[];
  /**
   * Sequence numbers read, in order, with the index of their record in `batch` (-1 for none, -2
   * for an `S` line: nobody waits for its receipt).
   */
  seqs?: number[];
  /** True once an `R` line was read: the peer may be waiting for its receipt. */
  records?: boolean;
}

/** The persistent part of a link: what we last got from the peer. */
export interface LinkMark {
  /** The peer's store epoch the mark refers to. */
  epoch: string;
  /** The peer's last sequence number we received. */
  seq: number;
}

/**
 * One link from this server to a neighbour.
 *
 * @example
 * ```ts
 * import { SERVER_DEFAULTS } from "./options.ts";
 * declare const server: LinkHost; // a HerdServer
 * const opts = SERVER_DEFAULTS.link;
 *
 * const link = new Link(server, 0, { name: "Jaquez", host: "127.0.0.1", port: 12001 }, opts);
 * link.start(); // dials at once, and again whenever the link is down
 * link.notify(); // something new in the store: send it
 * ```
 */
export class Link {
  readonly peer: string;
  readonly index: number;
  readonly host: string;
  readonly port: number;
  /** True when this server's name sorts first: its own connection wins a tie. */
  readonly lower: boolean;
  /** Records written to this link since start. */
  recordsSent = 0;
  /** Records read from this link since start. */
  recordsReceived = 0;
  /** Writes made on this link's connections (each a wake-up of the peer's process). */
  writes = 0;
  /** What we last received from the peer (kept across reconnects; persisted by the server). */
  mark: LinkMark = { epoch: "-", seq: 0 };

  #server: LinkHost;
  #opts: LinkOptions;
  #conn: Deno.Conn | undefined;
  /** True when #conn is one this server dialled. */
  #connOurs = false;
  /** True from our dial's connect until its handshake ends. */
  #dialing = false;
  /** The last failed dial's handshake said nothing against the other end being our peer. */
  #dialInconclusive = false;
  #running = false;
  /** Bumped by each start(): a dial loop from before a stop/start ends instead of doubling up. */
  #generation = 0;
  #cursor = -1; // -1 until the peer's SYNC says where to start
  /** The connection a pump is running (or scheduled) for; a new connection gets its own. */
  #pumpingFor: Deno.Conn | undefined;
  #lastWrite = 0;
  #lastRead = 0;
  /** When the current read completed (`performance.now()`; #lastRead is moved for our own lag). */
  #readAt = 0;
  #lastBeat = 0;
  #heartbeat: ReturnType<typeof setTimeout> | undefined;
  #wakeDialer: (() => void) | undefined;
  #dialTimer: ReturnType<typeof setTimeout> | undefined;
  #closedSignal: (() => void) | undefined;
  #syncStart = 0;
  #syncSent = 0;
  #syncReceived = 0;
  #catchingUp = false;
  /**
   * Our stream's last sequence number before its `CAUGHTUP` on this connection (Infinity until
   * then): the peer reads our records after it as live ones (see {@linkcode Link.#crossed}).
   */
  #liveAfter = Infinity;
  #peerCaughtUp = false;
  /** While the cursor is below this, records that came from the peer are sent back too. */
  #resendUpTo = 0;
  /** When new connections replaced a live one (`performance.now()`), the last few. */
  #liveReplaced: number[] = [];
  /** Until then a live connection is kept and new ones are closed (see `#keepLive`). */
  #keepUntil = 0;
  #keepFor = TWIN_HOLD_MS;
  #twinReportedAt = -Infinity;
  /**
   * An `S` the peer is owed (0 for none): the cursor passed records it has, with nothing to send.
   * It rides in the link's next write instead of taking one of its own (see #pump).
   */
  #owedSkip = 0;
  /** Our records waiting for the peer's receipt (`A` lines). */
  #waiting = new ReceiptWaiters();
  /** The peer's records we read, until we send their receipts. */
  #toReceipt = new ReceiptQueue(() => this.notify());
  /** Where `#pump` encodes its record batches; it grows to the largest, up to MAX_BATCH_BUF. */
  #batchBuf: Uint8Array = new Uint8Array(4096);
  /** Round trips of our PINGs; the peer answers them once it announced PONGs (empty line). */
  #rtt = new RttProbe();
  #peerPongs = false;
  #lastProbe = 0;
  /** A PONG or PING for the pump's next write (a write of ours in flight owns the socket). */
  #pongOwed = false;
  #pingOwed = false;
  /** Empty lines the peer sent: the first announces PONGs, the second HOLD and DIGEST. */
  #emptyLines = 0;
  /** Records the peer's catch-up stream should bring us (from its SYNC); -1 before it. */
  #expected = -1;
  /** The peer's head, from its SYNC. */
  #peerHead = 0;
  /** We sent the peer `HOLD`: our `DIGEST` goes once no other catch-up stream to us runs. */
  #holdAsked = false;
  /** Our digest as sent after a `HOLD`, and our head then: the peer's answer is compared to it. */
  #ourDigest: BucketDigest | undefined;
  #ourDigestHead = 0;
  /**
   * Our digest waits for the records stored so far to be written (see {@linkcode Link.#digestDue}):
   * undefined until it is due, then the connection it waited on, then "written".
   */
  #digestWait: Deno.Conn | "written" | undefined;
  /**
   * Since when (`performance.now()`; -1: not) our catch-up stream waits for the peer: for its
   * answer to our SYNC (`GO` or `HOLD`), then, after `HOLD`, for its `DIGEST`.
   */
  #heldSince = -1;
  /** The peer sent `HOLD` on this connection (it then owes us its digest, and we it ours). */
  #holdReceived = false;
  /** We answered a digest of the peer's with ours on this connection (once only). */
  #digestAnswered = false;
  /** The peer's `DIGEST` lines so far. */
  #peerDigest = new DigestReader();
  /** Buckets the peer holds as we do: our stream skips our records in them (digest.ts). */
  #matched: MatchedBuckets | undefined;
  /** HOLD or DIGEST lines for the pump's next write. */
  #controlOwed = "";
  /** The peer's topology hash (its `TREE` line on this connection), if it sent one. */
  #peerTree: string | undefined;
  /** This connection's stream skipped a record by the trees (see {@linkcode Link.#crossed}). */
  #treeSkipped = false;
  /** How far this connection's receipts lag behind the live records we sent (#stalled). */
  #lag = new ReceiptLag({ gapMs: STALL_MS, lagMs: LAG_MS });
  /** The last change-log entry sent on this link (kept while down, for `behind`). */
  #sentThrough = 0;
  /** The highest of our sequence numbers the peer was told of in this run (records or `S`). */
  #sentMax = 0;
  /** When the link's state (down / syncing / up) last changed. */
  #since = Date.now();
  /** Run-time cut and delay (link_control.ts); kept across stop/start of the server. */
  #settings: LinkSettings = { ...NORMAL_LINK };
  #delay = new LineDelay();

  constructor(
    server: LinkHost,
    index: number,
    peer: { name: string; host: string; port: number },
    opts: LinkOptions,
  ) {
    this.#server = server;
    this.index = index;
    this.peer = peer.name;
    this.host = peer.host;
    this.port = peer.port;
    this.lower = server.name < peer.name;
    this.#opts = opts;
  }

  /** True while the peer is still streaming what we missed (before its CAUGHTUP). */
  get receivingCatchUp(): boolean {
    return !this.#peerCaughtUp;
  }

  /** True while the link is connected and authenticated. */
  get up(): boolean {
    return this.#conn !== undefined;
  }

  /**
   * When the read being handled completed (a `performance.now()` time): the receipt waits of the
   * records it brought are bounded from then, with no clock read per record.
   */
  get readAt(): number {
    return this.#readAt;
  }

  /** Whether our record `seq` went out on this link already (so its receipt may be in, too). */
  sent(seq: number): boolean {
    return this.#sentThrough >= seq;
  }

  /** True while the link is up and its receipts are waited for (it is not late: receipts.ts). */
  get awaited(): boolean {
    return this.#conn !== undefined && !this.#waiting.late;
  }

  /**
   * True when this link is fit for the trees: up, both catch-up streams done, not cut or
   * delayed at this end, not stalled (live records sent with no receipt read for
   * {@linkcode STALL_MS}: a black-holed link, a frozen peer; or the oldest unreceipted one sent
   * over {@linkcode LAG_MS} ago: a path slower than the records; records would wait behind it where
   * the full flood goes round it, until the heartbeat gives up), and the peer sent a `TREE` hash
   * equal to ours (a peer from before the trees, or with another topology, never is: the herd
   * then floods as before).
   */
  get treeReady(): boolean {
    const hash = this.#server.treeHash;
    return this.#conn !== undefined && hash !== undefined && this.#peerTree === hash &&
      this.#peerCaughtUp && !this.#catchingUp && !this.#settings.cut &&
      this.#settings.delayMs === 0 && !this.#stalled();
  }

  /**
   * True when live records we sent have waited over {@linkcode STALL_MS} with no receipt read
   * since (the peer or the path is gone without a word: its heartbeat drops the link only after
   * 3 heartbeats), or the oldest of them over {@linkcode LAG_MS} (too slow for the trees).
   */
  #stalled(): boolean {
    return this.#lag.stalled(performance.now());
  }

  /** Sends `line` (a `WARN`) in the next write, to a peer that knows it (false otherwise). */
  sendControl(line: string): boolean {
    if (this.#conn === undefined || this.#emptyLines < 3 || this.#cursor < 0) return false;
    this.#controlOwed += line;
    this.notify();
    return true;
  }

  /** This link's state, round trip and backlog (for /status, metrics and `link.stats`). */
  stats(): LinkStats {
    const up = this.#conn !== undefined;
    return {
      peer: this.peer,
      state: !up ? "down" : this.#peerCaughtUp ? "up" : "syncing",
      rttMs: up ? this.#rtt.lastMs : null,
      behind: Math.max(0, this.#server.store.headSeq - this.#sentThrough),
      unacked: this.#waiting.size,
      since: this.#since,
    };
  }

  /** This end's run-time settings (a copy). */
  get settings(): LinkSettings {
    return { ...this.#settings };
  }

  /** True while this end has the link cut. */
  get cut(): boolean {
    return this.#settings.cut;
  }

  /**
   * Cuts or restores the link, or changes its delay, at this end; emits `link.control` when
   * something changed. A cut closes the connection and stops dialling (and accepting) until
   * restored; a restore dials at once.
   */
  control(change: LinkChange): LinkSettings {
    const next = { ...this.#settings, ...change };
    if (next.cut === this.#settings.cut && next.delayMs === this.#settings.delayMs) {
      return this.settings;
    }
    const wasCut = this.#settings.cut;
    this.#settings = next;
    const s = this.#server;
    s.bus.emit({
      kind: "link.control",
      t: Date.now(),
      server: s.name,
      peer: this.peer,
      cut: next.cut,
      delayMs: next.delayMs,
    });
    if (next.cut && !wasCut) this.#drop("link cut");
    s.floodChanged?.(this);
    // Wakes a dialler parked by the cut (or waiting out its backoff) to look again.
    if (wasCut !== next.cut) {
      if (this.#dialTimer !== undefined) clearTimeout(this.#dialTimer);
      this.#wakeDialer?.();
    }
    return this.settings;
  }

  /** Starts the link: dials at once. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    // The server's store may be a new one (a restart): nothing of it was sent yet.
    this.#sentThrough = 0;
    this.#sentMax = 0;
    this.#since = Date.now();
    this.#dialLoop(++this.#generation);
  }

  /**
   * True when a neighbour's dial must be refused (`HERD2 BUSY`) to keep one connection per
   * link: we sort first and our own dial is in flight or our own connection is up.
   */
  get refusesInbound(): boolean {
    return this.lower && (this.#dialing || (this.#conn !== undefined && this.#connOurs));
  }

  /** Stops the link and closes its connection. */
  stop(): void {
    this.#running = false;
    if (this.#dialTimer !== undefined) clearTimeout(this.#dialTimer);
    this.#wakeDialer?.();
    this.#drop("server stopping");
  }

  /**
   * New records are in the store: send them. The write starts in a microtask, after every
   * command whose read completed in this turn of the event loop, so records accepted together
   * share one write (measured: 2x IAMAT throughput at 32 connections over writing at once).
   */
  notify(): void {
    const conn = this.#conn;
    if (conn === undefined || this.#pumpingFor === conn || this.#cursor < 0) return;
    this.#pumpingFor = conn;
    queueMicrotask(() => this.#pump(conn));
  }

  /**
   * Calls `done(true)` once the peer has receipted our record `seq` (it and every server it
   * passed the record on to hold it), `done(false)` at `deadline` (a `performance.now()` time);
   * `done(true)` at once when the link goes down.
   */
  onReceipt(seq: number, deadline: number, done: (receipted: boolean) => void): void {
    this.#waiting.onReceipt(seq, deadline, done);
  }

  /**
   * Accepts an authenticated connection from the neighbour (the acceptor side), replacing any
   * older one (a neighbour that restarted may leave a half-open connection behind). `welcome`
   * (the handshake's last line) goes out in the same write as our SYNC, and the link is up at
   * once: nothing can slip in between the decision to accept and the link being up.
   */
  adopt(conn: Deno.Conn, splitter: LineSplitter, rest: SplitLine[], welcome = ""): void {
    if (!this.#running || this.#settings.cut || this.#keepLive()) {
      closeQuietly(conn);
      return;
    }
    this.#drop("replaced by a new connection");
    // It was a client connection until now: a link reads the longer peer lines.
    splitter.raiseLimit(MAX_PEER_LINE);
    this.#attach(conn, splitter, rest, "in", welcome);
  }

  /** A whole handshake, dialled by us, completed: the neighbour chose this connection. */
  #adoptOwn(conn: Deno.Conn, splitter: LineSplitter, rest: SplitLine[]): void {
    if (this.#keepLive()) {
      // Quietly: the handshake's deadline may have closed it as its last line came in, and a
      // close that throws here rejected the dial loop (nobody awaits it).
      closeQuietly(conn);
      return;
    }
    this.#drop("replaced by a new connection");
    this.#attach(conn, splitter, rest, "out");
  }

  // ---------------------------------------------------------------------------------------------

  #attach(
    conn: Deno.Conn,
    splitter: LineSplitter,
    rest: SplitLine[],
    dir: "in" | "out",
    welcome = "",
  ): void {
    this.#conn = conn;
    this.#connOurs = dir === "out";
    this.#cursor = -1;
    this.#lastRead =
      this.#lastWrite =
      this.#lastBeat =
      this.#readAt =
        performance.now();
    this.#syncStart = performance.now();
    this.#syncSent = this.#syncReceived = 0;
    this.#catchingUp = true;
    this.#liveAfter = Infinity;
    this.#peerCaughtUp = false;
    this.#owedSkip = 0;
    this.#toReceipt.reset(0);
    this.#rtt.reset();
    this.#rtt.lastMs = null;
    this.#peerPongs = this.#pongOwed = this.#pingOwed = false;
    this.#emptyLines = 0;
    this.#expected = this.#heldSince = -1;
    this.#holdAsked = this.#holdReceived = this.#digestAnswered = false;
    this.#ourDigest = this.#matched = undefined;
    this.#digestWait = undefined;
    this.#peerDigest = new DigestReader();
    this.#controlOwed = "";
    this.#peerTree = undefined;
    this.#treeSkipped = false;
    this.#lag.reset();
    this.#since = Date.now();
    const s = this.#server;
    s.bus.emit({ kind: "link.up", t: Date.now(), server: s.name, peer: this.peer, direction: dir });
    this.#heartbeat = setInterval(() => this.#beat(conn), Math.max(50, this.#opts.heartbeatMs / 2));
    const sync = { epoch: s.store.epoch, head: s.store.headSeq, yourEpoch: this.mark.epoch };
    // The empty lines after SYNC announce that we answer PINGs with PONG, and know HOLD/DIGEST.
    this.#send(
      conn,
      welcome + formatSync({ ...sync, mark: this.mark.seq }) + PONGS_LINE + DIGESTS_LINE +
        (s.treeHash === undefined ? "" : TREES_LINE),
    );
    this.#readLoop(conn, splitter, rest);
  }

  /**
   * True when a new connection must not replace the live one. A connection replaces the link's
   * older one (a neighbour that restarted may have left a half-open one behind), but one that
   * still reads is not half-open: when that happens {@linkcode TWIN_REPLACEMENTS} times within
   * {@linkcode TWIN_WINDOW_MS}, two processes answer for the neighbour's name (a stray copy, a
   * second config), and each replacement brought the other's epoch and a resend of the whole
   * log both ways, several times a second for as long as both ran (adv10b #2). The live one is
   * then kept for a while (doubling to a minute), and an error says so once a minute.
   */
  #keepLive(): boolean {
    if (this.#conn === undefined) return false;
    const now = performance.now();
    if (now - this.#lastRead > TWIN_LIVE_MS) return false; // half-open, or gone quiet: replace it
    if (now < this.#keepUntil) return true;
    const recent = this.#liveReplaced.filter((t) => now - t < TWIN_WINDOW_MS);
    recent.push(now);
    this.#liveReplaced = recent;
    if (recent.length < TWIN_REPLACEMENTS) {
      if (recent.length === 1) this.#keepFor = TWIN_HOLD_MS;
      return false;
    }
    this.#liveReplaced = [];
    this.#keepUntil = now + this.#keepFor;
    if (now - this.#twinReportedAt >= 60_000) {
      this.#twinReportedAt = now;
      this.#error(
        "peer-conflict",
        `connections from ${this.peer} keep replacing a live one (two processes serving ` +
          `${this.peer}?): keeping the current one for ${Math.round(this.#keepFor / 1000)} s`,
      );
    }
    this.#keepFor = Math.min(TWIN_HOLD_MAX_MS, this.#keepFor * 2);
    return true;
  }

  /** Closes the connection (if any); the link dials again as when it went down. */
  reconnect(reason: string): void {
    this.#drop(reason);
  }

  /** Closes the current connection (if any) and reports the link down. */
  #drop(reason: string): void {
    const conn = this.#conn;
    if (conn === undefined) return;
    this.#conn = undefined;
    this.#cursor = -1;
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    this.#waiting.clear();
    this.#since = Date.now();
    this.#delay.release();
    closeQuietly(conn);
    const s = this.#server;
    // Records from its unfinished catch-up stream no longer wait for it to end.
    if (!this.#peerCaughtUp) s.catchUpEnded?.(this, false);
    s.bus.emit({ kind: "link.down", t: Date.now(), server: s.name, peer: this.peer, reason });
    s.floodChanged?.(this);
    this.#closedSignal?.();
  }

  #beat(conn: Deno.Conn): void {
    if (this.#conn !== conn) return;
    const now = performance.now();
    const hb = this.#opts.heartbeatMs;
    // A beat that fires late means our own event loop was busy (a big catch-up, a long GC):
    // bytes the peer sent meanwhile may be waiting unread, so the stall is not its silence.
    const lag = now - this.#lastBeat - Math.max(50, hb / 2);
    this.#lastBeat = now;
    if (lag > hb / 2) this.#lastRead += lag;
    // Only reads prove the peer alive: a write pending to a peer that is gone (a cut) looks
    // like one pending to a slow reader, and the peer writes heartbeats while it reads (below).
    if (now - this.#lastRead > 3 * hb) {
      this.#drop("heartbeat timeout");
      return;
    }
    // A peer that never answered, or asked us to HOLD and never sent its DIGEST: stream after all.
    if (this.#heldSince >= 0 && now - this.#heldSince > HOLD_MAX_MS) {
      this.#heldSince = -1;
      this.notify();
    }
    this.#pingIfDue(conn, now);
    // A peer that answers PINGs gets one per heartbeat even while the link is busy, so the
    // round trip stays current (into the pump's next write when one is in flight).
    if (this.#peerPongs && this.#rtt.outstanding === 0 && now - this.#lastProbe >= hb) {
      if (this.#pumpingFor === conn) this.#pingOwed = true;
      else this.#ping(conn, now);
    }
  }

  /**
   * Sends a heartbeat when nothing was written for a heartbeat interval. Also called from the
   * read loop: a server digesting a long catch-up keeps the peer's heartbeat check fed even
   * when its own timers run late.
   */
  #pingIfDue(conn: Deno.Conn, now: number): void {
    // A pump write in flight owns the socket (a PING inside it would split a line); its bytes
    // reach the peer anyway.
    if (now - this.#lastWrite >= this.#opts.heartbeatMs && this.#pumpingFor !== conn) {
      this.#ping(conn, now);
    }
  }

  #ping(conn: Deno.Conn, now: number): void {
    this.#lastProbe = now;
    this.#rtt.sent(now);
    this.#send(conn, this.#owed() + PING_LINE);
  }

  /** Writes lines (text or bytes); link errors surface in the read loop, which drops the link. */
  #send(conn: Deno.Conn, text: string | Uint8Array): Promise<void> {
    this.#lastWrite = performance.now();
    this.writes++;
    const bytes = typeof text === "string" ? binaryToBytes(text) : text;
    // A delayed link (or one whose delay just ended) queues, so lines keep their order.
    const delayMs = this.#settings.delayMs;
    const written = delayMs > 0 || this.#delay.queued > 0
      ? this.#delay.run(delayMs, () => writeAll(conn, bytes))
      : writeAll(conn, bytes);
    return written.catch(() => {
      if (this.#conn === conn) this.#drop("write failed");
    });
  }

  /**
   * True while records after our cursor wait for the peer's catch-up stream to end: the peer
   * is still streaming us its records, ours to it is done, and every record after the cursor
   * came in a catch-up stream (none is a client's or from a live link: `liveSeq`). During the
   * catch-up of a restarted server from two neighbours, each sends nearly every record; sent at
   * once, each neighbour got the other's stream back as duplicates (~N records each way, a DROP
   * line apiece). Held until the peer's CAUGHTUP, the records it sent meanwhile are known to be
   * held by it and skipped (`RecordStore.heldBy`); the rest go then. Nothing is skipped that the
   * peer did not send us, only delayed, and a client's record is never held back (it takes the
   * records before it along). No deadlock: each end sends its own catch-up before it waits.
   */
  #waitsForPeer(): boolean {
    // Our catch-up stream waits for the peer's GO, or after its HOLD for its DIGEST.
    if (this.#heldSince >= 0) return true;
    if (this.#holdAsked && !this.#catchingUp && !this.#peerCaughtUp) {
      // We asked the peer to HOLD: until its CAUGHTUP (after its answer to our DIGEST, which
      // says what it holds) nothing goes to it but a client's record and what precedes it. A
      // live record from another neighbour would take every record before it along: a whole
      // catch-up sent back.
      const client = this.#server.clientSeq;
      return client !== undefined && client <= this.#cursor;
    }
    const live = this.#server.liveSeq;
    return live !== undefined && !this.#catchingUp && !this.#peerCaughtUp &&
      this.#cursor >= this.#resendUpTo && live <= this.#cursor;
  }

  async #pump(conn: Deno.Conn): Promise<void> {
    const s = this.#server;
    let fair: FairShare | undefined;
    try {
      while (this.#conn === conn && this.#cursor >= 0) {
        if (this.#digestDue()) this.#sendDigest();
        const skip = this.#cursor < this.#resendUpTo ? SKIP_NONE : this.index;
        const slice = this.#waitsForPeer()
          ? { records: [], lastSeq: this.#cursor }
          : s.store.readAfter(this.#cursor, this.#opts.batchRecords, skip, this.#matched);
        const local = slice.records.length === 0 ? undefined : s.peerStore?.(this.peer);
        // The trees: only live records (not a catch-up, nor a resend to a peer that lost some).
        const skips = slice.records.length === 0 || this.#catchingUp || skip !== this.index
          ? undefined
          : s.treeSkips?.(this);
        // A batch the peer holds whole is not the end of the log: more may follow it.
        const heldWhole = (local !== undefined || skips !== undefined) &&
          this.#withoutHeld(slice.records, local, skips);
        // Receipts ride in the record stream's writes, so they never interleave with a batch.
        // With no record to send, a write is only for what the peer waits for: receipts of `S`
        // lines alone (nobody waits for them) and our own `S` wait for the next write. Written
        // at once, they were a write each way per write (each side's `S` receipted with an `S`
        // of its own): ~75 writes and wake-ups a second each way on every link off the flood's
        // trees, and at a leaf two of them before the receipt the origin's reply waited for
        // (BENCHMARKS.md, "Five processes of 2026-11-28, third pass").
        const idle = slice.records.length === 0 && this.#controlOwed === "" && !this.#pongOwed &&
          !this.#pingOwed && !this.#toReceipt.urgent;
        let text = idle ? "" : this.#controlOwed + this.#toReceipt.take();
        this.#controlOwed = "";
        if (this.#pongOwed) {
          this.#pongOwed = false;
          text = PONG_LINE + text;
        }
        if (this.#pingOwed) {
          this.#pingOwed = false;
          this.#lastProbe = performance.now();
          this.#rtt.sent(this.#lastProbe);
          text = PING_LINE + text;
        }
        if (slice.records.length === 0) {
          // Only records the peer has (they came from it, or were replaced by ones that did): no
          // write for that alone. The `S` waits for the next write (receipts, records, a PING);
          // it only moves the peer's mark, and a mark that lags just means a longer catch-up
          // after a reconnect. Alone it cost a write, a read and the peer's `A` for it: 8 of the
          // 24 writes of one update at one connection (BENCHMARKS.md, "Optimisations").
          if (slice.lastSeq !== this.#cursor) this.#skipTo(slice.lastSeq);
          // Read on past a batch the peer holds whole: ending here would end a catch-up stream
          // (its CAUGHTUP) before the records after that batch. A long run of those (a restarted
          // neighbour that holds most of a catch-up) is scanned in turns, not in one piece.
          if (text === "" && heldWhole) {
            const turn = (fair ??= new FairShare()).turn();
            if (turn !== undefined) await turn;
            continue;
          }
          if (text === "") break;
          await this.#send(conn, text + this.#owed());
          continue;
        }
        this.#owedSkip = 0; // the records below carry the peer's mark past it
        const lastRecordSeq = slice.records[slice.records.length - 1].seq;
        // Encoded straight into bytes (no line strings), in the link's batch buffer: the pump
        // awaits each write before the next, so one buffer serves them all.
        const bytes = encodeRecords(
          text,
          slice.records,
          lastRecordSeq !== slice.lastSeq ? formatSkip(slice.lastSeq) : "",
          this.#batchBuf,
        );
        if (bytes.buffer !== this.#batchBuf.buffer && bytes.length <= MAX_BATCH_BUF) {
          this.#batchBuf = bytes;
        }
        this.#cursor = this.#sentThrough = slice.lastSeq;
        if (slice.lastSeq > this.#sentMax) this.#sentMax = slice.lastSeq;
        if (!this.#catchingUp && s.receipts) this.#lag.sent(lastRecordSeq, performance.now());
        this.recordsSent += slice.records.length;
        if (this.#catchingUp) this.#syncSent += slice.records.length;
        s.bus.emit({
          kind: "propagation.sent",
          t: Date.now(),
          server: s.name,
          to: this.peer,
          records: slice.records,
          catchUp: this.#catchingUp,
        });
        await this.#send(conn, bytes);
      }
      if (this.#catchingUp && this.#heldSince < 0 && this.#conn === conn) {
        this.#catchingUp = false;
        this.#liveAfter = this.#cursor;
        this.#send(conn, this.#owed() + formatCaughtUp(this.#syncSent));
        s.floodChanged?.(this);
      }
    } catch (err) {
      // A bug here must cost this connection (it redials and catches up), never the process.
      this.#error("internal", `link to ${this.peer}: ${errText(err, true)}`);
      if (this.#conn === conn) this.#drop("send failed");
    } finally {
      if (this.#pumpingFor === conn) this.#pumpingFor = undefined;
    }
    // Records may have arrived while the last write was in flight (unless they wait).
    const more = (this.#cursor < s.store.headSeq && !this.#waitsForPeer()) ||
      this.#controlOwed !== "" || this.#digestDue();
    if (this.#conn === conn && (more || this.#pongOwed)) this.notify();
  }

  /**
   * Takes out of `records` those that `peer` (the neighbour's store, in this process) holds
   * already, or a newer record of their client: it got them from another neighbour. Each is
   * receipted at once, for what the peer's receipt would vouch for is true now (it holds the
   * record; its onward links are waited for by whoever delivered it first, and that wait reaches
   * the record's origin). The flood's copies that cross (3 of 7 record lines per update in the
   * seed herd, each an encode, a parse, a DROP line and a receipt) are not sent; the `S` after the
   * batch, or alone, moves the peer's mark past them as for records it sent us. True when it took
   * out every record of a batch (not the end of the log: the pump reads on).
   */
  #withoutHeld(
    records: StoredRecord[],
    peer: RecordStore | undefined,
    skips: ReadonlySet<string> | undefined,
  ): boolean {
    const store = this.#server.store;
    let kept = 0;
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      if (peer !== undefined && peer.holdsAtLeast(r, store)) {
        this.#waiting.receipted(r.seq, r.seq);
        // Known held by the peer, as if it had sent it: a copy of it the peer streams us later
        // did not cross ours (#crossed), and its receipt must not wait for our next write.
        store.heldBy(r, this.index);
      } else if (skips !== undefined && skips.has(r.origin)) {
        // Not our child in the record's tree: its parent there delivers it, and the receipt our
        // wait needs comes through that parent's side (the origin waits on each of its children,
        // and each child on its own). Not marked held: the peer may not have it yet.
        this.#waiting.receipted(r.seq, r.seq);
        this.#treeSkipped = true;
      } else records[kept++] = r;
    }
    const whole = kept === 0 && records.length > 0;
    records.length = kept;
    return whole;
  }

  /**
   * The cursor passes records the peer has, with nothing to write. Our own records among them
   * were replaced by newer ones from the peer before they were sent: the peer would receipt
   * their numbers at once on reading the `S` (a receipt that vouches for nothing more than the
   * newer record it sent us), so nobody waits for that `S`.
   */
  #skipTo(seq: number): void {
    this.#waiting.receipted(this.#cursor + 1, seq);
    this.#cursor = this.#sentThrough = seq;
    if (seq > this.#sentMax) this.#sentMax = seq;
    this.#owedSkip = seq;
  }

  /** The owed `S` line ("" when none), now taken. */
  #owed(): string {
    const seq = this.#owedSkip;
    this.#owedSkip = 0;
    return seq === 0 ? "" : formatSkip(seq);
  }

  async #readLoop(conn: Deno.Conn, splitter: LineSplitter, rest: SplitLine[]): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    // A Buffer over the same bytes: `R` lines are read from them (#onRecordBytes).
    const bytes = Buffer.from(buf.buffer);
    const fair = new FairShare();
    let reason = "closed by peer";
    try {
      if (rest.length > 0 && !this.#handle(conn, rest)) return;
      while (this.#conn === conn) {
        const n = await conn.read(buf);
        if (n === null) break;
        this.#lastRead = this.#readAt = performance.now();
        if (!this.#handle(conn, splitter.push(buf.subarray(0, n), RECORD_BYTE), bytes)) return;
        const now = performance.now();
        this.#pingIfDue(conn, now);
        // A catch-up stream always has data: let the other links and the timers have a turn.
        const turn = fair.turn(now);
        if (turn !== undefined) await turn;
      }
    } catch (err) {
      reason = `read error: ${(err as Error).name}`;
      // A socket error is the network's doing; anything else is a bug handling the peer's
      // lines: it costs this connection (the link redials), and is reported.
      if (!Object.values(Deno.errors).some((E) => err instanceof E)) {
        this.#error("internal", `link to ${this.peer}: ${errText(err, true)}`);
      }
    }
    if (this.#conn === conn) this.#drop(reason);
  }

  /**
   * Handles lines from the peer, one handler per message; false (after dropping the link) when
   * the peer misbehaved. An invalid record (or a line over the peer limit, which no valid record
   * reaches) is skipped with an `error` event: one bad record must never stop the good ones
   * behind it, and a link that dropped on it would meet it again at every reconnect. The
   * records of one read are stored together, then receipted in the order they were read.
   */
  #handle(conn: Deno.Conn, lines: SplitLine[], bytes?: Buffer): boolean {
    let intake: Intake = {};
    let bad: string | undefined;
    for (const line of lines) {
      if (line.end !== undefined) {
        // An `R` line left undecoded: taken from its bytes unless it is not in the plain form.
        if (this.#onRecordBytes(bytes!, line.start!, line.end, intake)) continue;
        line.text = bytes!.toString("latin1", line.start, line.end);
      }
      if (line.overlong) {
        this.#skipped(`overlong line ${JSON.stringify(line.text.slice(0, 80))}`);
        continue;
      }
      if (line.text === "") {
        // The peer answers our PINGs (its first empty line after SYNC), knows HOLD and DIGEST
        // (its second), and TREE and WARN (its third).
        this.#peerPongs = true;
        const empty = ++this.#emptyLines;
        if (empty === 2) this.#onDigestsAnnounced();
        else if (empty === 3 && this.#server.treeHash !== undefined) {
          this.#controlOwed += formatTree(this.#server.treeHash);
          this.notify();
        }
        continue;
      }
      const m = parseLinkLine(line.text);
      if (m === undefined) {
        bad = `unexpected ${JSON.stringify(line.text.slice(0, 80))}`;
        break;
      }
      switch (m.type) {
        case RECORD: {
          const held = this.#server.store.get(m.record.client);
          const same = held !== undefined && sameRecord(held, m.record);
          if (!this.#onRecord(m.seq, m.record, held, same, intake)) this.#badRecord(line.text);
          break;
        }
        case SKIP:
          this.#onSkip(m.seq, intake);
          break;
        case RECEIPT:
          this.#waiting.resume();
          this.#waiting.receipted(m.from, m.to);
          // The peer receipts: not stalled (see #stalled); a clock for what it still owes.
          this.#lag.receipted(m.to, performance.now());
          break;
        case PING:
          // Liveness (the read loop noted the read); answered only to a peer that announced it
          // understands PONG.
          if (this.#peerPongs) {
            this.#pongOwed = true;
            this.notify();
          }
          break;
        case PONG:
          this.#rtt.answered(performance.now());
          break;
        case SYNC:
          this.#onSync(m);
          break;
        case CAUGHTUP:
          // One per connection, as we send it: each was a `sync.done` event and a log line, so
          // a peer repeating it (11 bytes) wrote 59 bytes of log each, without end (adv16).
          if (this.#peerCaughtUp) {
            bad = "a second CAUGHTUP";
            break;
          }
          // The records read before it are the stream's last: stored as the catch-up's (one
          // batch, counted in its SYNC line), not as live ones: a stream's last read may carry
          // hundreds of them.
          this.#take(conn, intake);
          intake = {};
          this.#onCaughtUp();
          break;
        case HOLD:
          this.#holdReceived = true;
          // Only a catch-up stream still running waits (its CAUGHTUP is not written yet).
          if (this.#catchingUp && this.#heldSince < 0) this.#heldSince = performance.now();
          break;
        case GO:
          this.#heldSince = -1;
          this.notify();
          break;
        case DIGEST:
          if (!this.#onDigest(m)) bad = `out-of-order DIGEST ${m.first}/${m.buckets}`;
          break;
        case TREE:
          this.#peerTree = m.hash;
          this.#server.floodChanged?.(this);
          break;
        case WARN:
          this.#server.warned?.(m.server, m.n, this);
          break;
      }
      if (bad !== undefined) break;
    }
    this.#take(conn, intake);
    if (bad !== undefined) {
      const s = this.#server;
      s.bus.emit({
        kind: "peer.rejected",
        t: Date.now(),
        server: s.name,
        remote: this.peer,
        reason: bad,
      });
      if (this.#conn === conn) this.#drop(`peer sent garbage: ${bad}`);
      return false;
    }
    return true;
  }

  /** The origins of this link's latest `R` lines, most recent first (see {@linkcode Link.#origin}). */
  #origins: string[] = [];

  /**
   * `R` in the plain form (seven fields, single spaces: {@linkcode recordFieldsAt}), read from the
   * bytes; false when the line is in another form (the caller decodes and parses it). A record we
   * hold byte for byte (half of what a link carries) is compared in place, nothing decoded but
   * its client; another one has its fields decoded one by one, with no line string or split.
   * Either goes to the one intake, {@linkcode Link.#onRecord}.
   */
  #onRecordBytes(bytes: Buffer, start: number, end: number, intake: Intake): boolean {
    const at = FIELD_AT;
    const seq = recordFieldsAt(bytes, start, end, at);
    if (seq < 0) return false;
    // Short fields (a client ID, a time difference) are decoded in JavaScript: binaryAt.
    const client = binaryAt(bytes, at[4], at[5] - 1);
    // One lookup of the client: the table's newest record of it, and ours by its slot.
    const newest = this.#server.store.newest(client);
    const held = newest === undefined ? undefined : this.#server.store.heldOf(newest);
    let ok: boolean;
    if (
      held !== undefined && binaryEquals(bytes, at[6], end, held.time) &&
      binaryEquals(bytes, at[5], at[6] - 1, held.location) &&
      binaryEquals(bytes, at[2], at[3] - 1, held.origin) &&
      binaryEquals(bytes, at[3], at[4] - 1, held.diff)
    ) {
      const { origin, diff, location, time } = held;
      ok = this.#onRecord(seq, { origin, diff, client, location, time }, held, true, intake);
    } else if (
      // In `start` the table's newest record of the client is often this very one: another
      // server of this process stored it moments ago and it floods on. Its strings are shared and
      // it was validated when stored: no decode, no validation (only its coordinates).
      newest !== undefined && (held === undefined || newest !== recordFields(held)) &&
      binaryEquals(bytes, at[6], end, newest.time) &&
      binaryEquals(bytes, at[5], at[6] - 1, newest.location) &&
      binaryEquals(bytes, at[2], at[3] - 1, newest.origin) &&
      binaryEquals(bytes, at[3], at[4] - 1, newest.diff)
    ) {
      const { origin, diff, location, time } = newest;
      const record: PeerRecord = {
        origin,
        diff,
        client,
        location,
        time,
        lat: 0,
        lng: 0,
        flat: true,
      };
      ok = this.#onRecord(seq, record, held, false, intake, true);
    } else {
      // Checked in its bytes first (validFieldsAt: validateRecord's answer), so a new record's
      // fields are decoded once and not scanned again; an invalid one is decoded and checked as
      // text, which reports it the same way.
      const coords = validFieldsAt(
        bytes,
        at[2],
        at[3] - 1,
        at[3],
        at[4] - 1,
        at[4],
        at[5] - 1,
        at[5],
        at[6] - 1,
        at[6],
        end,
      );
      // The client string is the one just looked up: the store's lookups reuse its hash.
      const record: PeerRecord = {
        origin: this.#origin(bytes, at[2], at[3] - 1),
        diff: binaryAt(bytes, at[3], at[4] - 1),
        client,
        location: bytes.toString("latin1", at[5], at[6] - 1),
        time: bytes.toString("latin1", at[6], end),
        lat: coords === undefined ? 0 : coords.lat,
        lng: coords === undefined ? 0 : coords.lng,
        flat: true,
      };
      ok = this.#onRecord(seq, record, held, false, intake, coords !== undefined);
    }
    if (!ok) this.#badRecord(bytes.toString("latin1", start, end));
    return true;
  }

  /**
   * The origin field `[from, to)` of an `R` line as a string: one of the few server names this
   * link has brought lately when the bytes are one of them (no decode), else decoded.
   */
  #origin(bytes: Buffer, from: number, to: number): string {
    const known = this.#origins;
    for (let i = 0; i < known.length; i++) {
      if (binaryEquals(bytes, from, to, known[i])) return known[i];
    }
    const origin = bytes.toString("latin1", from, to);
    if (known.length === ORIGINS_KEPT) known.pop();
    known.unshift(origin);
    return origin;
  }

  /**
   * `R`: the one intake of a record read from a link, however its line was read. `held` is the
   * client's stored record (undefined when none); `same` whether the line is that record byte for
   * byte. A new record is validated and queued for the store, a held one counted (see
   * {@linkcode Link.#onDuplicate}); false when the record is invalid, skipped (receipted as it
   * is): the caller quotes its line. `valid`: the fields are a record another store of this
   * process holds (validated when stored). `checked`: `fields` is a {@linkcode PeerRecord}
   * validated in its bytes, its coordinates set.
   */
  #onRecord(
    seq: number | undefined,
    fields: AtFields | PeerRecord,
    held: StoredRecord | undefined,
    same: boolean,
    intake: Intake,
    valid = false,
    checked = false,
  ): boolean {
    // At or below the mark: a resend of the whole log (we lost records, see SYNC). An invalid
    // record's sequence number still counts: resending it would not mend it.
    if (seq !== undefined && seq > this.mark.seq) this.mark.seq = seq;
    if (same && seq !== undefined) {
      this.#onDuplicate(seq, held!, fields, intake);
      return true;
    }
    intake.records = true;
    if (same) {
      this.#server.store.heldBy(held!, this.index);
      if (this.#peerCaughtUp) this.#waiting.receipted(held!.seq, held!.seq);
    }
    // A record we hold byte for byte was validated when stored: not again; nor one that another
    // store of this process holds (`valid`): its coordinates only.
    const at = same || checked
      ? NOT_PARSED
      : valid
      ? parseLocation(fields.location)
      : validateRecord(fields);
    if (seq === undefined || at === undefined) {
      // Receipted as it is: nothing more will come of it, so nobody should wait for it.
      if (seq !== undefined) (intake.seqs ??= []).push(seq, -1);
      return false;
    }
    if (checked) this.#onNew(seq, fields as PeerRecord, intake);
    else if ((fields as PeerRecord).flat === true) {
      // The bytes' own record: filled in, not copied.
      const record = fields as PeerRecord;
      record.lat = at.lat;
      record.lng = at.lng;
      this.#onNew(seq, record, intake);
    } else this.#onNew(seq, { ...fields, lat: at.lat, lng: at.lng }, intake);
    return true;
  }

  /** Reports an invalid record's line, skipped. */
  #badRecord(line: string): void {
    this.#skipped(`bad record ${JSON.stringify(line.slice(0, 80))}`);
  }

  /** A record to offer the store (valid, or a duplicate), receipted in read order. */
  #onNew(seq: number, record: PeerRecord, intake: Intake): void {
    const batch = intake.batch ??= [];
    batch.push(record);
    (intake.seqs ??= []).push(seq, batch.length - 1);
  }

  /** An `R` of a record we hold byte for byte (`known`; `fields` are its AT fields as read). */
  #onDuplicate(seq: number, known: StoredRecord, fields: AtFields, intake: Intake): void {
    // Asked before heldBy marks the peer as holding it (our stream would skip it from now on).
    const crossed = this.#peerCaughtUp && this.#crossed(known);
    // The peer holds it: our stream to it skips it (a resend after it lost records does not).
    this.#server.store.heldBy(known, this.index);
    // Our receipt of it goes in our next write; a write of its own only when the peer may wait
    // for it (see #crossed).
    if (!crossed) intake.records = true;
    if (!this.#peerCaughtUp) {
      // A catch-up stream's copy of what we hold: a restarted server reads nearly every record
      // from each of its neighbours, and half of what it reads is this. Nothing to store, log
      // or wait for: receipted as it is, counted in the batch's event.
      (intake.known ??= []).push(fields);
      (intake.seqs ??= []).push(seq, -1);
      return;
    }
    // The peer streams only what it holds, and outside a resend never a record it got from us:
    // so it holds this one and did not get it through us, which is all its receipt of our copy
    // (a duplicate there) would say. Stop waiting: saves the leaves of the flood a round trip
    // per record (BENCHMARKS.md, "Optimisations of 2026-11-26").
    this.#waiting.receipted(known.seq, known.seq);
    // Offered as any record (the store counts it a duplicate, its event says so).
    this.#onNew(seq, { ...fields, lat: NOT_PARSED.lat, lng: NOT_PARSED.lng }, intake);
  }

  /**
   * True when our own copy of `known` (a record we hold, that the peer just sent us byte for
   * byte) already went to the peer as a live record on this connection: past our `CAUGHTUP`, at
   * or before our cursor, and not skipped by our stream (it did not come over this link, the peer
   * was not known to hold it, no digest bucket covered it). The two copies crossed: the peer
   * settles its wait for our receipt when it reads ours (the shortcut of #onDuplicate, at its
   * end), so our `A` for its copy need not take a write of its own: it rides in our next one.
   * Each update crosses on about two links of the seed herd, and at one connection those `A`
   * lines were 4 of the 16 link writes per IAMAT (BENCHMARKS.md, "Five processes of 2026-11-27").
   */
  #crossed(known: StoredRecord): boolean {
    const bit = this.index >= 0 && this.index < 31 ? 1 << this.index : 0;
    // A stream that skipped records by the trees did not send every record up to its cursor.
    return bit !== 0 && !this.#treeSkipped && known.via !== this.index &&
      ((known.held ?? 0) & bit) === 0 &&
      known.seq > this.#liveAfter && known.seq <= this.#cursor &&
      (this.#matched === undefined || known.seq > this.#matched.upTo);
  }

  /** `S`: the peer skipped records up to `seq` (they came from us): our mark moves on. */
  #onSkip(seq: number, intake: Intake): void {
    if (seq > this.mark.seq) this.mark.seq = seq;
    (intake.seqs ??= []).push(seq, -2);
  }

  /**
   * `SYNC`: where our stream to the peer starts: from its mark when the mark is in our current
   * epoch, else from the beginning. A peer whose head is behind our mark lost its newest
   * changes (a crash before they reached disk): it will reuse those sequence numbers, so our
   * mark goes back to its head.
   *
   * A peer that lost records it had sent us (it came back with another store, e.g. after
   * --memory, or behind our mark) needs them back, but our log marks them as having come from
   * it and the stream skips those: so send it the whole log, skipping nothing, up to our
   * current head.
   */
  #onSync(m: Sync): void {
    const s = this.#server;
    // The peer got records of this epoch numbered past anything this store held at its start
    // or has sent it since: it was restored from an older copy of its data dir (or lost its
    // last records otherwise). Its next records would reuse those numbers, which the peer's
    // mark says it has (adv10b #1, review11 #1). A fresh epoch, and every link again.
    if (
      s.renewEpoch !== undefined && s.loadHead !== undefined && m.yourEpoch === s.store.epoch &&
      m.mark > Math.max(s.loadHead, this.#sentMax)
    ) {
      if (s.renewEpoch(this.peer, m.mark)) return;
    }
    this.#peerHead = m.head;
    this.#expected = m.epoch === this.mark.epoch ? Math.max(0, m.head - this.mark.seq) : m.head;
    const lost = (this.mark.epoch !== "-" && m.epoch !== this.mark.epoch) ||
      m.head < this.mark.seq;
    if (m.epoch !== this.mark.epoch) this.mark = { epoch: m.epoch, seq: 0 };
    if (m.head < this.mark.seq) this.mark.seq = m.head;
    const from = m.yourEpoch === s.store.epoch && !lost ? m.mark : 0;
    this.#cursor = this.#sentThrough = Math.min(from, s.store.headSeq);
    this.#resendUpTo = lost ? s.store.headSeq : 0;
    this.notify();
  }

  /**
   * The peer knows HOLD and DIGEST (its second empty line, right after its SYNC). We answer its
   * SYNC: `HOLD` when another neighbour is streaming us the same records (a restarted server
   * gets nearly every record from each neighbour; the second, held and then told what we hold,
   * sends only what differs), else `GO`. A big catch-up stream of ours to it waits for its
   * answer likewise: started at once, a few MB of it were in the sockets before a HOLD came.
   */
  #onDigestsAnnounced(): void {
    const s = this.#server;
    const min = Math.max(this.#opts.holdMinRecords, this.#peerHead / 4);
    if (this.#expected >= min && s.catchUpElsewhere?.(this, min) === true) {
      this.#holdAsked = true;
      this.#controlOwed += HOLD_LINE;
    } else {
      this.#controlOwed += GO_LINE;
    }
    const owed = s.store.headSeq - this.#cursor;
    if (
      this.#catchingUp && this.#cursor >= 0 &&
      owed >= Math.max(this.#opts.holdMinRecords, s.store.headSeq / 4)
    ) {
      this.#heldSince = performance.now();
    }
    this.notify();
  }

  /**
   * Our DIGEST to a peer we asked to HOLD is due: no other catch-up stream to us still runs (it
   * ended, or broke off: the digest says what we hold either way), and the peer's has not ended.
   */
  #digestDue(): boolean {
    const due = this.#holdAsked && this.#ourDigest === undefined && !this.#peerCaughtUp &&
      this.#server.catchUpElsewhere?.(this, 0) !== true;
    if (!due || this.#digestWait === "written") return due;
    // Hashing every record takes the main thread ~0.3 s per 1M, and it comes the moment the
    // other stream ends: first the records that stream brought are written to the record log
    // (their commit and its marks), which would otherwise wait behind the digest. Bounded: a
    // stalled disk delays the digest by at most DIGEST_WRITE_WAIT_MS.
    const conn = this.#conn;
    if (this.#digestWait === conn) return false;
    const written = this.#server.recordsWritten?.();
    if (written === undefined || conn === undefined) {
      this.#digestWait = "written";
      return true;
    }
    this.#digestWait = conn;
    withTimeout(written, DIGEST_WRITE_WAIT_MS).catch(() => {}).then(() => {
      if (this.#digestWait !== conn) return;
      this.#digestWait = "written";
      this.notify();
    });
    return false;
  }

  /** Sends our store's digest (the peer answers with its own, and then streams what differs). */
  #sendDigest(): void {
    const store = this.#server.store;
    const digest = new BucketDigest(
      bucketCount(store.size),
      crypto.getRandomValues(new Uint32Array(1))[0],
    );
    this.#ourDigestHead = store.digest(digest);
    this.#ourDigest = digest;
    this.#controlOwed += formatDigest(digest);
  }

  /**
   * `DIGEST`: a part of the peer's digest. A whole one answers ours (then our stream to the peer
   * skips what it holds as we do), or asks for ours (we send it, skip likewise, and our held
   * catch-up stream goes on). False when the part does not continue the digest.
   */
  #onDigest(part: DigestPart): boolean {
    if (!this.#peerDigest.add(part)) return false;
    const theirs = this.#peerDigest.take();
    if (theirs === undefined) return true;
    const ours = this.#ourDigest;
    if (ours !== undefined && ours.salt === theirs.salt && ours.buckets === theirs.buckets) {
      this.#matched = ours.matched(theirs, this.#ourDigestHead);
    } else {
      // Ours is owed once, to a peer that held our stream: each costs a pass over the store (~0.3
      // s per 1M records), and a peer repeating unasked digests held the thread (adv16).
      if (!this.#holdReceived || this.#digestAnswered) return false;
      this.#digestAnswered = true;
      const mine = new BucketDigest(theirs.buckets, theirs.salt);
      this.#matched = mine.matched(theirs, this.#server.store.digest(mine));
      this.#controlOwed += formatDigest(mine);
      this.#heldSince = -1;
    }
    this.notify();
    return true;
  }

  /**
   * Records this link's catch-up stream to us should bring, while it is up and runs one we did
   * not ask to HOLD (-1 otherwise: down, caught up, held, or its SYNC not read yet).
   */
  get catchUpExpected(): number {
    return this.#conn === undefined || this.#peerCaughtUp || this.#holdAsked ? -1 : this.#expected;
  }

  /** `CAUGHTUP`: the peer's catch-up stream to us is complete. */
  #onCaughtUp(): void {
    this.#peerCaughtUp = true;
    this.#server.catchUpEnded?.(this, true);
    this.#server.floodChanged?.(this);
    this.#since = Date.now();
    const s = this.#server;
    s.bus.emit({
      kind: "sync.done",
      t: Date.now(),
      server: s.name,
      peer: this.peer,
      sent: this.#syncSent,
      received: this.#syncReceived,
      ms: Math.round(performance.now() - this.#syncStart),
    });
  }

  /** Stores what one read brought, and queues its receipts (each waiting on its onward ones). */
  #take(conn: Deno.Conn, intake: Intake): void {
    const s = this.#server;
    const { batch, known, seqs } = intake;
    let waits: (ReceiptCountdown | undefined)[] = [];
    if (batch !== undefined || known !== undefined) {
      const read = (batch?.length ?? 0) + (known?.length ?? 0);
      this.recordsReceived += read;
      this.#syncReceived += read;
      waits = s.receive(batch ?? [], this, known);
      s.markAdvanced?.(this);
    }
    if (seqs !== undefined && this.#conn === conn && s.receipts) {
      for (let i = 0; i < seqs.length; i += 2) {
        const at = seqs[i + 1];
        this.#toReceipt.add(seqs[i], at < 0 ? undefined : waits[at], at === -2);
      }
      // An `S` alone is receipted in our next write: nobody waits for it (see #skipTo).
      if (intake.records) this.notify();
    }
  }

  /**
   * Reports a peer line that was skipped (an invalid record); the link stays up. At most
   * {@linkcode SKIP_REPORTS} at once, then one a second, the rest counted in the next report: a
   * peer streaming invalid records made an `ERROR` log line each, 3.5 log bytes per byte sent,
   * without end (adv16).
   */
  #skipped(what: string): void {
    const now = performance.now();
    this.#skipReports = Math.min(
      SKIP_REPORTS,
      this.#skipReports + (now - this.#skipReportAt) / 1000,
    );
    this.#skipReportAt = now;
    if (this.#skipReports < 1) {
      this.#skipsUnreported++;
      return;
    }
    this.#skipReports--;
    const more = this.#skipsUnreported === 0
      ? ""
      : ` (and ${this.#skipsUnreported} more before it, not reported one by one)`;
    this.#skipsUnreported = 0;
    this.#error("record-invalid", `skipped from ${this.peer}: ${what}${more}`);
  }
  /** Skipped-line reports this link may make now (a token bucket: one more a second). */
  #skipReports = SKIP_REPORTS;
  #skipReportAt = 0;
  /** Skipped lines not reported since the last report. */
  #skipsUnreported = 0;

  /** Emits an `error` event (bounded: a message may quote the peer's bytes). */
  #error(reason: ErrorReason, message: string): void {
    const s = this.#server;
    message = message.slice(0, 500);
    s.bus.emit({ kind: "error", t: Date.now(), server: s.name, reason, message });
  }

  // ---------------------------------------------------------------------------------------------
  // The dialing side.

  async #dialLoop(generation: number): Promise<void> {
    const backoff = new Backoff(this.#opts.backoffMinMs, this.#opts.backoffMaxMs);
    let wait = 0; // a server that starts dials at once
    while (this.#running && generation === this.#generation) {
      if (this.#settings.cut) {
        // Cut: park until restored (or stopped), then dial at once.
        await new Promise<void>((resolve) => (this.#wakeDialer = resolve));
        this.#wakeDialer = undefined;
        backoff.reset();
        wait = 0;
        continue;
      }
      if (this.#conn !== undefined) {
        // Up (dialled by either end): wait for it to go down, then redial quickly.
        await new Promise<void>((resolve) => (this.#closedSignal = resolve));
        this.#closedSignal = undefined;
        backoff.reset();
        wait = backoff.current;
        continue;
      }
      if (wait > 0) {
        // Jitter (±25%) keeps a herd that restarts together from redialling in lockstep.
        await new Promise<void>((resolve) => {
          this.#wakeDialer = resolve;
          this.#dialTimer = setTimeout(resolve, jittered(wait));
        });
        this.#wakeDialer = undefined;
        if (
          !this.#running || generation !== this.#generation || this.#conn !== undefined ||
          this.#settings.cut
        ) {
          continue;
        }
      }
      try {
        const outcome = await this.#dialOnce();
        // Only a neighbour that stays away slows the redial; a busy one is there and dialling us.
        if (outcome === "failed") {
          backoff.next();
          this.#server.dialFailed?.(this, this.#dialInconclusive);
        } else backoff.reset();
      } catch (err) {
        // A bug in one dial costs that dial, reported: nobody awaits this loop, so a throw here
        // was an unhandled rejection (the end of the process) and a link that never redialled.
        this.#error("internal", `dialling ${this.peer}: ${errText(err, true)}`);
        backoff.next();
      }
      wait = backoff.current;
    }
  }

  /** One dial and handshake. */
  async #dialOnce(): Promise<"up" | "busy" | "failed"> {
    const s = this.#server;
    this.#dialing = true;
    this.#dialInconclusive = false;
    let conn: Deno.Conn | undefined;
    // A connect unanswered for a heartbeat interval goes nowhere (a SYN lost in a cut is
    // retried by the kernel 1 s later, then 2, 4 s...): give up, so that the next backoff dial
    // goes out as soon as the path is back.
    const abort = new AbortController();
    const deadline = setTimeout(() => abort.abort(), this.#opts.heartbeatMs);
    try {
      try {
        if (s.connectPeer !== undefined) conn = await s.connectPeer(this.peer, abort.signal);
        else {
          const hostname = this.host;
          const tcp = await Deno.connect({ hostname, port: this.port, signal: abort.signal });
          tcp.setNoDelay(true);
          conn = tcp;
        }
      } catch (err) {
        // A neighbour that is away is no news; a refused certificate is.
        if (err instanceof LinkTlsError) {
          s.bus.emit({
            kind: "peer.rejected",
            t: Date.now(),
            server: s.name,
            remote: this.peer,
            reason: err.message,
          });
        }
        return "failed";
      }
      const splitter = new LineSplitter(MAX_PEER_LINE);
      const r = await dialHandshake(s.auth, conn, splitter, "peer", s.name, this.peer);
      if (r.ok && this.#running && !this.#settings.cut) {
        this.#adoptOwn(conn, splitter, r.rest);
        conn = undefined;
        return "up";
      }
      if (!r.ok && r.busy) return "busy";
      // Linked but dropped (stopped, or the link is cut): the port proved itself all the same.
      this.#dialInconclusive = r.ok || r.inconclusive === true;
      if (!r.ok && r.reason !== "connection lost") {
        s.bus.emit({
          kind: "peer.rejected",
          t: Date.now(),
          server: s.name,
          remote: this.peer,
          reason: r.reason,
        });
      }
      return "failed";
    } finally {
      clearTimeout(deadline);
      this.#dialing = false;
      closeQuietly(conn);
    }
  }
}
