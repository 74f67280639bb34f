/**
 * The SSE hub: one bus subscriber that numbers the herd's events, keeps the newest in a bounded
 * ring, and feeds any number of event-stream subscribers from it.
 *
 * Each subscriber is only a cursor into the ring (the id of the last event it was sent), so a
 * subscriber costs no memory per event: at every flush tick (100 ms) the hub writes one frame
 * holding every event after the cursor; a busy tick (more than `coalesceOver` events) is
 * coalesced (dashboard/coalesce.ts: each client's best location, one propagation summary per
 * link, with an `event: merged` count), since no person reads thousands of events a second and a
 * hundred browsers each sent them all cost the herd tens of megabytes a second. At most
 * `maxFrame` events go in a frame: a subscriber further behind skips ahead and gets a gap notice.
 * Level subscribers share one string a tick, written once each. A subscriber whose cursor has fallen
 * out of the ring is told about the gap (`event: gap`) and continues from the oldest event kept.
 * A subscriber whose stream accepts nothing for `stallMs` is cut loose (its stream errored); its
 * browser reconnects with `Last-Event-ID` and gets the events, or a gap notice. The herd never
 * waits for a subscriber.
 *
 * @module
 */

import { DISPLAY_MAX, displayClip, type EventBus, type HerdEvent } from "../servers/events.ts";
import { HTTP_STALL_MS, httpConnectionCap } from "../servers/http_front.ts";
import { coalesce, type Entry } from "./coalesce.ts";
import {
  type DashEvent,
  type GapNotice,
  type HelloNotice,
  type MergedNotice,
  STREAM_KINDS,
  SUMMARY_CLIENTS,
} from "./types.ts";

/** Tuning knobs; the defaults suit a browser dashboard. */
export interface HubOptions {
  /** Events kept for resume (ring size). Default 10 000. */
  capacity?: number;
  /** Flush period per subscriber: at most 1000/flushMs frames a second. Default 100. */
  flushMs?: number;
  /** A comment line is sent after this long without any write. Default 15 000. */
  heartbeatMs?: number;
  /**
   * Most events in one frame; a subscriber further behind skips ahead (gap). Default 300, so a
   * browser gets at most 3,000 events a second (more than a person can follow; the page refetches
   * the state on gaps), and a hundred browsers cost the herd little.
   */
  maxFrame?: number;
  /**
   * A tick with more new events than this is coalesced (dashboard/coalesce.ts: each client's best
   * location, one propagation summary per link) rather than sent event by event. Default: the
   * frame cap, so a tick that would have fitted a frame is never merged (a browser's resume
   * after a second's drop gets every event), and one that would have been cut short is merged
   * instead of skipped.
   */
  coalesceOver?: number;
  /** A subscriber that accepts nothing for this long is cut loose. Default 30 000. */
  stallMs?: number;
  /** WHATSAT events kept for the Places log. Default 200. */
  whatsatCapacity?: number;
  /** Most event streams open at once; past it a stream is refused. Default {@linkcode eventStreamCap}. */
  maxStreams?: number;
  /**
   * Milliseconds clock for the heartbeat and the stall deadline (tests). Default
   * `performance.now`: monotonic, so a wall-clock step cannot stop the heartbeat (stepped back,
   * the HTTP front then closed an idle stream as silent) or cut a live subscriber (stepped on).
   */
  now?: () => number;
}

/** Where a subscriber's frames go (an HTTP response body, or a test double). */
export interface SubscriberSink {
  /** True when the sink can take another frame now (no backpressure). */
  ready(): boolean;
  /** Queues text; called only when `ready()` was true. */
  write(text: string): void;
  /** Ends the stream; `abort` means "cut loose" (error the response rather than finish it). */
  close(abort: boolean): void;
}

/** A live subscription; `close()` removes it. */
export interface Subscription {
  readonly cursor: number;
  close(): void;
}

/** Counters for /metrics. */
export interface HubStats {
  subscribers: number;
  frames: number;
  eventsSent: number;
  /** Events folded into another in a busy tick's frame (not sent on their own). */
  merged: number;
  gaps: number;
  cut: number;
  eventsIn: number;
  /** Streams refused because {@linkcode EventHub.maxStreams} were open. */
  refused: number;
}

interface Sub {
  sink: SubscriberSink;
  cursor: number;
  lastWrite: number;
  blockedSince: number;
  closed: boolean;
}

const STREAMED = new Set<string>(STREAM_KINDS);

/** One flush tick's text for an event range, and whether it skipped events (a gap). */
interface Tick {
  text: string;
  gap: boolean;
}

/** A subscriber (and, in servers/http_front.ts, any connection) accepting nothing this long is cut. */
export const DEFAULT_STALL_MS = HTTP_STALL_MS;

/**
 * Most event streams open at once: half the dashboard port's connections (at least 1). A live
 * stream is never quiet, so the front can never take its place for a new connection; with this
 * cap the other half always has room for health checks, metrics, pages and API calls (a stream
 * refused gets a quick 503, then is quiet and can make way).
 */
export function eventStreamCap(connections = httpConnectionCap()): number {
  return Math.max(1, Math.floor(connections / 2));
}

/** Converts a bus event to its display form: display text, summarised batches, an id. */
export function toDashEvent(e: HerdEvent, id: number): DashEvent {
  switch (e.kind) {
    case "propagation.sent":
    case "propagation.received": {
      const { records, ...rest } = e;
      const clients: string[] = [];
      for (let i = 0; i < records.length && i < SUMMARY_CLIENTS; i++) {
        clients.push(displayClip(records[i].client));
      }
      return { ...rest, count: records.length, clients, id } as DashEvent;
    }
    case "location.accepted":
    case "location.dropped": {
      const r = e.record;
      return {
        ...e,
        record: {
          origin: displayClip(r.origin),
          diff: displayClip(r.diff),
          client: displayClip(r.client),
          location: displayClip(r.location),
          time: displayClip(r.time),
        },
        id,
      };
    }
    case "whatsat":
      return { ...e, client: displayClip(e.client), id };
    case "line.in":
    case "invalid":
      return { ...e, line: displayClip(e.line), id };
    case "reply.out":
      return { ...e, reply: displayClip(e.reply), id };
    default:
      return { ...e, id };
  }
}

/** True when `e` carries text longer than a page shows ({@linkcode displayClip} cuts it). */
function longText(e: HerdEvent): boolean {
  switch (e.kind) {
    case "location.accepted":
    case "location.dropped": {
      const r = e.record;
      return r.origin.length + r.diff.length + r.client.length + r.location.length +
          r.time.length > DISPLAY_MAX;
    }
    case "whatsat":
      return e.client.length > DISPLAY_MAX;
    case "line.in":
    case "invalid":
      return e.line.length > DISPLAY_MAX;
    case "reply.out":
      return e.reply.length > DISPLAY_MAX;
    default:
      return false;
  }
}

/** The SSE wire text of one message. `data` must not contain newlines (JSON never does). */
export function sseMessage(data: string, event?: string, id?: number): string {
  let s = "";
  if (event) s += `event: ${event}\n`;
  if (id !== undefined) s += `id: ${id}\n`;
  return s + `data: ${data}\n\n`;
}

/** Numbers, keeps and streams the herd's events. See the module doc. */
export class EventHub {
  /** Changes on every start: lets a browser tell a restarted dashboard from a resumed one. */
  readonly boot: string = crypto.randomUUID().slice(0, 8);
  readonly #cap: number;
  readonly #ring: (Entry | undefined)[];
  readonly #whatsats: DashEvent[] = [];
  readonly #whatsatCap: number;
  readonly #flushMs: number;
  readonly #heartbeatMs: number;
  readonly #maxFrame: number;
  readonly #coalesceOver: number;
  readonly #stallMs: number;
  /** See {@linkcode HubOptions.maxStreams}. */
  readonly maxStreams: number;
  readonly #now: () => number;
  readonly #subs = new Set<Sub>();
  readonly #off: () => void;
  #next = 1;
  #timer: ReturnType<typeof setInterval> | undefined;
  #stats = { frames: 0, eventsSent: 0, merged: 0, gaps: 0, cut: 0, eventsIn: 0, refused: 0 };
  /** What a subscriber gets for an event range, built once per flush tick. */
  readonly #frames = new Map<string, Tick>();

  constructor(bus: EventBus, opts: HubOptions = {}) {
    this.#cap = Math.max(1, opts.capacity ?? 10_000);
    this.#ring = new Array(this.#cap);
    this.#whatsatCap = opts.whatsatCapacity ?? 200;
    this.#flushMs = opts.flushMs ?? 100;
    this.#heartbeatMs = opts.heartbeatMs ?? 15_000;
    this.#maxFrame = opts.maxFrame ?? 300;
    this.#coalesceOver = opts.coalesceOver ?? this.#maxFrame;
    this.#stallMs = opts.stallMs ?? DEFAULT_STALL_MS;
    this.maxStreams = Math.max(1, opts.maxStreams ?? eventStreamCap());
    this.#now = opts.now ?? (() => performance.now());
    this.#off = bus.subscribe((e) => this.#onEvent(e));
  }

  /** Id of the newest event (0 before any). */
  get lastId(): number {
    return this.#next - 1;
  }

  /** Id of the oldest event still kept (lastId + 1 when none). */
  get firstId(): number {
    return Math.max(1, this.#next - this.#cap);
  }

  /** True when {@linkcode maxStreams} streams are open: a new one is refused. */
  get full(): boolean {
    return this.#subs.size >= this.maxStreams;
  }

  /** A stream was refused (the hub was {@linkcode full}): counted for the metrics. */
  refuse(): void {
    this.#stats.refused++;
  }

  /** Counters for /metrics. */
  stats(): HubStats {
    return { subscribers: this.#subs.size, ...this.#stats };
  }

  #onEvent(e: HerdEvent): void {
    if (!STREAMED.has(e.kind)) return;
    const id = this.#next++;
    // Conversion is deferred to the first reader, except for batches: holding their record
    // arrays in the ring would make its memory depend on batch sizes.
    const batch = e.kind === "propagation.sent" || e.kind === "propagation.received";
    // So are events with long text: the ring keeps what a page shows of it, not 64 KiB lines.
    const entry: Entry = batch || longText(e) ? { id, ev: toDashEvent(e, id) } : { id, raw: e };
    this.#ring[id % this.#cap] = entry;
    this.#stats.eventsIn++;
    if (e.kind === "whatsat") {
      this.#whatsats.push(this.#dash(entry));
      if (this.#whatsats.length > this.#whatsatCap) this.#whatsats.shift();
    }
  }

  #dash(e: Entry): DashEvent {
    if (!e.ev) {
      e.ev = toDashEvent(e.raw!, e.id);
      e.raw = undefined;
    }
    return e.ev;
  }

  #entry(id: number): Entry | undefined {
    const e = this.#ring[id % this.#cap];
    return e && e.id === id ? e : undefined;
  }

  /** Up to `n` newest events, oldest first (optionally only those `filter` keeps). */
  recent(n: number, filter?: (e: DashEvent) => boolean): DashEvent[] {
    const out: DashEvent[] = [];
    for (let id = this.lastId; id >= this.firstId && out.length < n; id--) {
      const e = this.#entry(id);
      if (!e) continue;
      const ev = this.#dash(e);
      if (!filter || filter(ev)) out.push(ev);
    }
    return out.reverse();
  }

  /** Newest WHATSAT events, oldest first (kept apart so busy herds do not push them out). */
  recentWhatsats(n = this.#whatsatCap): DashEvent[] {
    return this.#whatsats.slice(-n);
  }

  /**
   * Starts streaming to `sink`. `resumeFrom` is the id of the last event the subscriber has
   * (Last-Event-ID); null streams only events after now. An id newer than anything here (a
   * restarted dashboard) is treated as null; the hello notice carries the boot id so the browser
   * can tell.
   */
  subscribe(sink: SubscriberSink, resumeFrom: number | null = null): Subscription {
    const valid = resumeFrom !== null && Number.isSafeInteger(resumeFrom) && resumeFrom >= 0 &&
      resumeFrom <= this.lastId;
    const now = this.#now();
    const sub: Sub = {
      sink,
      cursor: valid ? resumeFrom : this.lastId,
      lastWrite: now,
      blockedSince: 0,
      closed: false,
    };
    const hello: HelloNotice = {
      boot: this.boot,
      lastId: this.lastId,
      resumeFrom: valid ? resumeFrom : null,
    };
    // `retry` tells EventSource how soon to reconnect after a drop.
    sink.write(`retry: 1000\n${sseMessage(JSON.stringify(hello), "hello")}`);
    this.#subs.add(sub);
    this.#ensureTimer();
    // Send a resume backlog at once rather than at the next tick.
    if (sub.cursor < this.lastId) this.#flushOne(sub, now);
    return {
      get cursor() {
        return sub.cursor;
      },
      close: () => this.#drop(sub, false),
    };
  }

  #drop(sub: Sub, abort: boolean): void {
    if (sub.closed) return;
    sub.closed = true;
    this.#subs.delete(sub);
    if (abort) this.#stats.cut++;
    try {
      sub.sink.close(abort);
    } catch { /* already gone */ }
    if (this.#subs.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #ensureTimer(): void {
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.flush(), this.#flushMs);
      // The dashboard's own lifetime is bound to its HTTP server, not to this timer.
      Deno.unrefTimer(this.#timer!);
    }
  }

  /** One flush tick for every subscriber (the timer calls it; tests may too). */
  flush(): void {
    const now = this.#now();
    this.#frames.clear();
    for (const sub of this.#subs) this.#flushOne(sub, now);
    this.#frames.clear();
  }

  #flushOne(sub: Sub, now: number): void {
    if (sub.closed) return;
    let ready: boolean;
    try {
      ready = sub.sink.ready();
    } catch {
      this.#drop(sub, false);
      return;
    }
    if (!ready) {
      if (sub.blockedSince === 0) sub.blockedSince = now;
      else if (now - sub.blockedSince >= this.#stallMs) this.#drop(sub, true);
      return;
    }
    sub.blockedSince = 0;
    let text = "";
    const last = this.lastId;
    if (sub.cursor < last) {
      const tick = this.#tick(sub.cursor, last);
      if (tick.gap) this.#stats.gaps++;
      text = tick.text;
      sub.cursor = last;
    } else if (now - sub.lastWrite >= this.#heartbeatMs) {
      text = `: heartbeat ${Math.round(now)}\n\n`;
    }
    if (text === "") return;
    try {
      sub.sink.write(text);
      sub.lastWrite = now;
    } catch {
      this.#drop(sub, false);
    }
  }

  /**
   * What a subscriber whose cursor is `from` gets for events through `to`: a gap notice, a
   * merged notice and the data frame, as one string (one write). Subscribers that are level
   * share it within a flush tick (and `sseBody` one encoding of it), so a hundred browsers cost
   * about what one does, plus the socket writes.
   */
  #tick(from: number, to: number): Tick {
    const key = `${from}:${to}`;
    const cached = this.#frames.get(key);
    if (cached !== undefined) return cached;
    let gapTo = 0;
    let merged = 0;
    let parts: string[];
    if (to - from <= this.#coalesceOver) {
      // A quiet tick: every event as it is (the newest frame's worth when out of the ring).
      const keep = Math.max(this.firstId - 1, to - this.#maxFrame, from);
      if (keep > from) gapTo = keep;
      parts = [];
      for (let id = keep + 1; id <= to; id++) {
        const e = this.#entry(id);
        if (!e) continue;
        e.json ??= JSON.stringify(this.#dash(e));
        parts.push(e.json);
      }
    } else {
      const lowest = Math.max(from + 1, this.firstId);
      const c = coalesce(lowest, to, this.#maxFrame, (id) => this.#entry(id), (e) => this.#dash(e));
      parts = c.parts;
      merged = c.merged;
      gapTo = c.skippedTo || lowest - 1;
      if (gapTo <= from) gapTo = 0;
    }
    let text = "";
    // More than a frame behind (out of the ring, or more than a frame even coalesced): the
    // oldest are skipped and the page told (it refetches the state).
    if (gapTo > 0) {
      const gap: GapNotice = { from: from + 1, to: gapTo };
      text += sseMessage(JSON.stringify(gap), "gap", gapTo);
    }
    if (merged > 0) {
      const notice: MergedNotice = { from: (gapTo || from) + 1, to, merged };
      text += sseMessage(JSON.stringify(notice), "merged");
      this.#stats.merged += merged;
    }
    if (parts.length > 0) {
      text += sseMessage(`[${parts.join(",")}]`, undefined, to);
      this.#stats.frames++;
      this.#stats.eventsSent += parts.length;
    }
    const tick = { text, gap: gapTo > 0 };
    this.#frames.set(key, tick);
    return tick;
  }

  /**
   * Sends a small named message (e.g. the sparklines' `series` point) to every subscriber that
   * can take it now; one that cannot misses it (it refetches the state after a gap anyway).
   * Not kept in the ring: it has no id, so resuming neither repeats nor waits for it.
   */
  notice(event: string, data: unknown): void {
    if (this.#subs.size === 0) return;
    const text = sseMessage(JSON.stringify(data), event);
    for (const sub of [...this.#subs]) {
      try {
        if (!sub.closed && sub.sink.ready()) sub.sink.write(text);
      } catch {
        this.#drop(sub, false);
      }
    }
  }

  /**
   * Ends every open stream normally (browsers reconnect with Last-Event-ID and lose nothing).
   * For tests and for shedding connections; the hub keeps running.
   */
  disconnectAll(): void {
    for (const sub of [...this.#subs]) this.#drop(sub, false);
  }

  /** Ends every subscription and leaves the bus. */
  close(): void {
    this.#off();
    for (const sub of [...this.#subs]) this.#drop(sub, false);
  }
}

const encoder = new TextEncoder();
let lastText = "";
let lastBytes = new Uint8Array(0);

/**
 * An SSE response body for one subscriber: a byte stream with a bounded queue (`highWater`
 * bytes). `ready()` is false while the client is not reading; cutting loose errors the stream,
 * which makes Deno drop the connection.
 */
export function sseBody(
  hub: EventHub,
  resumeFrom: number | null,
  highWater = 256 * 1024,
): ReadableStream<Uint8Array> {
  let sub: Subscription | undefined;
  let ctrl!: ReadableStreamDefaultController<Uint8Array>;
  let done = false;
  const sink: SubscriberSink = {
    ready: () => !done && (ctrl.desiredSize ?? 0) > 0,
    write: (text) => {
      if (done) return;
      // Level subscribers get the same frame string in one tick: encode it once.
      if (text !== lastText) {
        lastText = text;
        lastBytes = encoder.encode(text);
      }
      ctrl.enqueue(lastBytes);
    },
    close: (abort) => {
      if (done) return;
      done = true;
      if (abort) ctrl.error(new Error("event stream subscriber too slow"));
      else ctrl.close();
    },
  };
  return new ReadableStream<Uint8Array>({
    start(c) {
      ctrl = c;
      sub = hub.subscribe(sink, resumeFrom);
    },
    cancel() {
      done = true;
      sub?.close();
    },
  }, { highWaterMark: highWater, size: (chunk) => chunk.byteLength });
}

/** Parses a Last-Event-ID header / `after` parameter: a non-negative integer, else null. */
export function parseEventId(v: string | null | undefined): number | null {
  if (v == null || !/^\d{1,15}$/.test(v.trim())) return null;
  return Number(v.trim());
}
