/**
 * The herd's typed event bus. Everything observable about a server goes through here: logs,
 * metrics and the dashboard subscribe; no server code knows who listens.
 *
 * Dispatch is synchronous and cheap (a loop over subscribers), so emitting on the hot path costs
 * one object allocation. Subscribers must not throw or block; a subscriber that does heavy work
 * buffers and does it later (see `servers/log.ts`).
 *
 * Text fields that came off the wire (`line`, `reply`, `client`, ...) are "binary strings": one
 * char per byte (latin1), so they stay byte-exact. Use {@linkcode displayText} to show them.
 *
 * @module
 */

import type { FailureReason, InvalidReason } from "./reasons.ts";
import type { AtFields } from "./record.ts";
import { errText, oneLine } from "./text.ts";

interface Base {
  /** Wall-clock time of the event, ms since the epoch. */
  t: number;
  /** The server the event happened at. */
  server: string;
}

/** A server started listening. */
export interface ServerUpEvent extends Base {
  kind: "server.up";
  host: string;
  port: number;
}
/** A server stopped (listener and connections closed). */
export interface ServerDownEvent extends Base {
  kind: "server.down";
}
/** A client (or a not-yet-authenticated peer) connected. */
export interface ClientConnectEvent extends Base {
  kind: "client.connect";
  conn: number;
  remote: string;
}
/** A client connection ended. */
export interface ClientDisconnectEvent extends Base {
  kind: "client.disconnect";
  conn: number;
  remote: string;
  reason: string;
}
/** A client connection was refused (e.g. too many connections). */
export interface ClientRefusedEvent extends Base {
  kind: "client.refused";
  remote: string;
  reason: string;
}
/** A command line arrived from a client (binary string, without its LF). */
export interface LineInEvent extends Base {
  kind: "line.in";
  conn: number;
  line: string;
}
/** A reply went out to a client (binary string, as written). */
export interface ReplyOutEvent extends Base {
  kind: "reply.out";
  conn: number;
  reply: string;
  /** A WHATSAT's answer: the log summarises the reply's JSON body with these, never writes it. */
  places?: { status: string; results: number };
}
/** The verb of a command as metrics label it (anything but IAMAT and WHATSAT is `other`). */
export type CommandVerb = "IAMAT" | "WHATSAT" | "other";
/** A client command's reply is ready (one per command; blank lines are not commands). */
export interface CommandEvent extends Base {
  kind: "command";
  conn: number;
  verb: CommandVerb;
  /** `invalid`: the client's line was wrong; `error`: a valid command failed here. */
  result: "ok" | "invalid" | "error";
  /** Why it got `?` (empty when ok). */
  reason: InvalidReason | FailureReason | "";
  /** From the line's arrival to its reply being ready, in seconds. */
  seconds: number;
}
/** An invalid command: the reply is `? <line>`; this says why (logs and the dashboard show it). */
export interface InvalidEvent extends Base {
  kind: "invalid";
  conn: number;
  /** The line (binary string). */
  line: string;
  verb: CommandVerb;
  reason: InvalidReason;
}
/** A new location record was stored. `from` is the peer it came from, or null for a client. */
export interface LocationAcceptedEvent extends Base {
  kind: "location.accepted";
  record: AtFields;
  from: string | null;
  lat: number;
  lng: number;
  /** Arrived in a catch-up stream after a link came up. */
  catchUp?: boolean;
}
/**
 * Records one read of a catch-up stream stored: how many, the first few of them, and what the
 * server holds after. An observer gets this in place of that read's `location.accepted` events
 * (servers/observe.ts), so a restart watched by a dashboard costs one JSON line per read, not one
 * per record; a remote dashboard's bus carries it as it came. A server's own bus never has it.
 */
export interface LocationBatchEvent extends Base {
  kind: "location.batch";
  from: string;
  /** Records stored (each a `location.accepted` at the server). */
  count: number;
  /** The first of them (at most a few), with their coordinates. */
  records: (AtFields & { lat: number; lng: number })[];
  /** Records the server held after storing them. */
  held: number;
}

/**
 * The `location.accepted` events a batch stands for, of the records it names (the rest are
 * counted only).
 */
export function batchAccepted(e: LocationBatchEvent): LocationAcceptedEvent[] {
  return e.records.map(({ lat, lng, ...record }) => ({
    kind: "location.accepted",
    t: e.t,
    server: e.server,
    record,
    from: e.from,
    lat,
    lng,
    catchUp: true,
  }));
}

/** A record was not stored because the server already had it or something newer. */
export interface LocationDroppedEvent extends Base {
  kind: "location.dropped";
  record: AtFields;
  from: string | null;
  /** `full`: newer, but the process's record budget had no room (--max-records-mib). */
  reason: "stale" | "duplicate" | "full";
  /** Arrived in a catch-up stream after a link came up. */
  catchUp?: boolean;
  /** The client connection that sent it (a client's IAMAT; the log budget charges it). */
  conn?: number;
}
/** Records written to a peer link in one batch. */
export interface PropagationSentEvent extends Base {
  kind: "propagation.sent";
  to: string;
  records: readonly AtFields[];
  /** Part of a catch-up stream after a link came up (not live flooding). */
  catchUp?: boolean;
}
/** Records read from a peer link in one batch (before the store decides on them). */
export interface PropagationReceivedEvent extends Base {
  kind: "propagation.received";
  from: string;
  records: readonly AtFields[];
  /** Part of a catch-up stream after a link came up (not live flooding). */
  catchUp?: boolean;
  /**
   * How many of `records` are byte for byte what this server holds, found so in a catch-up
   * stream: they get no `location.dropped` event each (a restarted server reads every record
   * from each neighbour: a million events nobody logs), so this counts them.
   */
  duplicates?: number;
}
/** A link to a neighbour came up (authenticated both ways). */
export interface LinkUpEvent extends Base {
  kind: "link.up";
  peer: string;
  /** "out" when this server dialled, "in" when the neighbour did. */
  direction: "in" | "out";
}
/** A link to a neighbour went down (or a dial failed after having been up). */
export interface LinkDownEvent extends Base {
  kind: "link.down";
  peer: string;
  reason: string;
}

/** `syncing`: up, and the peer's catch-up stream to us has not ended (`CAUGHTUP`). */
export type LinkState = "down" | "syncing" | "up";

/** One link's statistics (`servers/link_stats.ts` keeps them). */
export interface LinkStats {
  peer: string;
  state: LinkState;
  /** The last PING's round trip in ms; null before the first (or with a peer that never PONGs). */
  rttMs: number | null;
  /**
   * Change-log entries after the last one sent on this link (entries that came from the peer
   * count too: the stream skips them without reading them one by one).
   */
  behind: number;
  /** Records sent whose receipt (`A` line) a reply is waiting for. */
  unacked: number;
  /** When the state last changed (ms since the epoch). */
  since: number;
}

/**
 * A link's statistics changed (state, round trip, records behind): at most one per link per
 * heartbeat interval (`servers/link_stats.ts`).
 */
export interface LinkStatsEvent extends Base, LinkStats {
  kind: "link.stats";
}

/**
 * A link's run-time settings changed at this end (servers/link_control.ts): cut (closed and not
 * redialled until restored) and the delay added to the lines this end sends on it.
 */
export interface LinkControlEvent extends Base {
  kind: "link.control";
  peer: string;
  cut: boolean;
  delayMs: number;
}

/** Catch-up with a neighbour finished: how many records went each way. */
export interface SyncDoneEvent extends Base {
  kind: "sync.done";
  peer: string;
  sent: number;
  received: number;
  ms: number;
}
/** A peer connection was refused (bad secret, garbage, wrong name). */
export interface PeerRejectedEvent extends Base {
  kind: "peer.rejected";
  remote: string;
  reason: string;
}
/** A WHATSAT was answered from a Places provider. */
export interface WhatsatEvent extends Base {
  kind: "whatsat";
  client: string;
  radiusKm: number;
  bound: number;
  provider: string;
  status: string;
  count: number;
  latencyMs: number;
  coalesced: boolean;
  error?: string;
}
/**
 * The AT reply (or a peer's receipt) of a new record went out without some neighbours' receipt:
 * they did not confirm it within --receipt-wait-ms (a slow or dead peer, or an overloaded host).
 */
export interface ReceiptLateEvent extends Base {
  kind: "receipt.late";
  client: string;
  /** The neighbours whose receipt did not come in time. */
  peers: string[];
  waitedMs: number;
}
/** One group commit of a server's record log (`ok` false: the write failed and is retried). */
export interface PersistCommitEvent extends Base {
  kind: "persist.commit";
  records: number;
  seconds: number;
  ok: boolean;
}
/** What an {@linkcode ErrorEvent} is about. */
export type ErrorReason =
  /** The durable store cannot be written (full disk, I/O error); records are owed and retried. */
  | "disk-write"
  /** The durable store cannot be read at start. */
  | "disk-read"
  /** Records failed their checksum or validation (stored, or from a peer) and were skipped. */
  | "record-invalid"
  /**
   * The record log does not end with a clean stop (the server was killed, or stopped with records
   * owed): it takes a fresh epoch and resyncs fully with its neighbours.
   */
  | "unclean-stop"
  /**
   * Connections from one neighbour keep replacing a live one: two processes seem to serve its
   * name. The live connection is kept for a while (once a minute).
   */
  | "peer-conflict"
  /** A bug: a command, handshake or link step threw; it cost that one line or connection. */
  | "internal"
  /** A Places answer was rejected or could not be formatted. */
  | "places"
  /** A dashboard observer stream was cut. */
  | "observer"
  /** Accepting a connection failed (out of descriptors, above all); retried after a pause. */
  | "accept"
  /** A log file cannot be written (full disk); its lines are counted and dropped until it can. */
  | "log-write"
  /**
   * The process's record budget (--max-records-mib) is reached: IAMATs that would add a client
   * or grow what the process holds get `?`, and peers' records of new clients past its margin are
   * dropped. At most once a minute per server, for clients' and for peers' records.
   */
  | "records-full";

/** Something went wrong that is worth a log line (never contains a secret). */
export interface ErrorEvent extends Base {
  kind: "error";
  reason: ErrorReason;
  message: string;
}

/** Every event the herd emits. Switch on `kind`. */
export type HerdEvent =
  | ServerUpEvent
  | ServerDownEvent
  | ClientConnectEvent
  | ClientDisconnectEvent
  | ClientRefusedEvent
  | LineInEvent
  | ReplyOutEvent
  | CommandEvent
  | InvalidEvent
  | LocationAcceptedEvent
  | LocationBatchEvent
  | LocationDroppedEvent
  | PropagationSentEvent
  | PropagationReceivedEvent
  | LinkUpEvent
  | LinkDownEvent
  | LinkStatsEvent
  | LinkControlEvent
  | SyncDoneEvent
  | PeerRejectedEvent
  | WhatsatEvent
  | ReceiptLateEvent
  | PersistCommitEvent
  | ErrorEvent;

/** The `kind` of every event. */
export type HerdEventKind = HerdEvent["kind"];

/** A function that receives events. */
export type Subscriber = (event: HerdEvent) => void;

/**
 * A synchronous publish/subscribe bus.
 *
 * @example
 * ```ts
 * const bus = new EventBus();
 * const off = bus.subscribe((e) => console.log(e.kind));
 * bus.emit({ kind: "server.down", server: "Hill", t: Date.now() });
 * off();
 * ```
 */
export class EventBus {
  #subscribers: Subscriber[] = [];
  /** Subscriber failures said so far, those since left unsaid, and until when to say none. */
  #failuresSaid = 0;
  #failuresUnsaid = 0;
  #quietUntil = 0;

  /** Adds a subscriber; returns the function that removes it. */
  subscribe(fn: Subscriber): () => void {
    this.#subscribers = [...this.#subscribers, fn];
    return () => {
      this.#subscribers = this.#subscribers.filter((s) => s !== fn);
    };
  }

  /** True when anyone listens (lets hot paths skip building events nobody reads). */
  get active(): boolean {
    return this.#subscribers.length > 0;
  }

  /** Delivers the event to every subscriber; a throwing subscriber does not stop the others. */
  emit(event: HerdEvent): void {
    // Copy-on-write array: subscribing during dispatch is safe without copying here.
    const subs = this.#subscribers;
    for (let i = 0; i < subs.length; i++) {
      try {
        subs[i](event);
      } catch (err) {
        this.#subscriberFailed(event.kind, err);
      }
    }
  }

  /**
   * Says a subscriber's failure on stderr: one line, the first {@linkcode FAILURES_SAID}, then
   * one a minute with the count of the others (a subscriber that fails on every event wrote a
   * line per event, and stderr's writes block when nobody drains them). Never throws: what was
   * thrown may not even convert to text (a Symbol, an object without a prototype), and a throw
   * from here reached the server code that emitted (a start, a store's update).
   */
  #subscriberFailed(kind: string, err: unknown): void {
    const now = performance.now();
    if (this.#failuresSaid >= FAILURES_SAID && now < this.#quietUntil) {
      this.#failuresUnsaid++;
      return;
    }
    if (++this.#failuresSaid >= FAILURES_SAID) this.#quietUntil = now + FAILURES_QUIET_MS;
    const unsaid = this.#failuresUnsaid;
    this.#failuresUnsaid = 0;
    try {
      const text = errText(err, true);
      const more = unsaid > 0 ? ` (${unsaid} more failure(s) since not shown)` : "";
      console.error(oneLine(`event subscriber failed on ${kind}: ${text.slice(0, 300)}${more}`));
    } catch {
      // stderr itself failed: nothing more to do
    }
  }
}

/** Subscriber failures said at once; beyond them, one per {@linkcode FAILURES_QUIET_MS}. */
const FAILURES_SAID = 10;
const FAILURES_QUIET_MS = 60_000;

const utf8 = new TextDecoder("utf-8");

/**
 * Turns a binary string (one char per byte) into readable text: UTF-8 where the bytes are UTF-8,
 * U+FFFD where they are not. For display only; the wire keeps the bytes.
 *
 * @example
 * ```ts
 * displayText("caf\xc3\xa9"); // "café"
 * ```
 */
export function displayText(binary: string): string {
  // Pure ASCII is the common case and needs no work.
  if (!/[^\x00-\x7f]/.test(binary)) return binary;
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return utf8.decode(bytes);
}

/** Bytes of a wire text the dashboard shows at most (a client ID's limit is 256). */
export const DISPLAY_MAX = 300;

/**
 * {@linkcode displayText} of at most the first `max` bytes, with how many more there were: what
 * a page shows of a line, a reply or a record's field. A client may send 64 KiB lines and
 * locations of thousands of digits; whole, 10,000 kept events or 2,000 records in one reply were
 * gigabytes on the herd's heap (adv10a #1, #2).
 *
 * @example
 * ```ts
 * displayClip("IAMAT " + "x".repeat(1000), 10); // "IAMAT xxxx… (+996 bytes)"
 * displayClip("IAMAT kiwi"); // "IAMAT kiwi"
 * ```
 */
export function displayClip(binary: string, max = DISPLAY_MAX): string {
  if (binary.length <= max) return displayText(binary);
  // Cut where a UTF-8 character starts (back over at most 3 continuation bytes), so no
  // character is split into U+FFFD.
  let cut = max;
  for (let k = 0; k < 3 && cut > 0 && (binary.charCodeAt(cut) & 0xc0) === 0x80; k++) cut--;
  // Decoded from a copy of the bytes: a slice of the line would be a view that keeps it whole.
  const bytes = new Uint8Array(cut);
  for (let i = 0; i < cut; i++) bytes[i] = binary.charCodeAt(i);
  return `${utf8.decode(bytes)}… (+${binary.length - cut} bytes)`;
}

/**
 * JSON with every non-ASCII char escaped (`\u00e9`), so the text survives any byte channel
 * unchanged: binary strings stay binary strings, Unicode stays Unicode, on the other side of
 * `JSON.parse`.
 *
 * @example
 * ```ts
 * asciiJson({ client: "k\xff", message: "café" }); // '{"client":"k\\u00ff","message":"caf\\u00e9"}'
 * ```
 */
export function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u0080-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
