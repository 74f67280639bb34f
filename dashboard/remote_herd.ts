/**
 * A herd seen from outside: the dashboard's `HerdView` for a herd of separate `deno task server`
 * processes (`deno task dashboard --config FILE`).
 *
 * For each server of the config it dials the server's client port and authenticates as an
 * observer (the challenge-response of `servers/handshake.ts`, role `observer`; the lines are
 * parsed by `servers/wire.ts`). The server ends
 * it with `HERD2 WATCHING <server>`, then sends a `STATE <json>` line with its state, its
 * snapshot's records in `RECORDS <json>` chunks, then one `EVENT <json>` line per event. The
 * bytes are latin1 (one char per byte), so the JSON's text
 * fields come out as the herd's binary strings.
 *
 * The five streams merge into one `EventBus` and one snapshot. A dropped stream is redialled
 * with exponential backoff (and jitter); while a server cannot be reached it shows as stopped,
 * with its links down. Servers cannot be stopped or started from here: `startServer` and
 * `stopServer` are absent, so the dashboard answers 409.
 *
 * @example
 * ```ts
 * import { loadConfig } from "../servers/config.ts";
 * import { serveDashboard } from "./app.ts";
 *
 * const herd = new RemoteHerd(await loadConfig("herd.json"), { secret: Deno.env.get("HERD_SECRET")! });
 * herd.start();
 * const dash = await serveDashboard(herd, { host: "127.0.0.1", port: 8000 });
 * ```
 *
 * @module
 */

import { HerdAuth } from "../servers/auth.ts";
import { dialHandshake } from "../servers/handshake.ts";
import { LinkPortBook } from "../servers/link_port.ts";
import { dialTls, loadTlsCa } from "../servers/tls.ts";
import type { HerdConfig, ServerConfig } from "../servers/config.ts";
import { EventBus, type LocationBatchEvent } from "../servers/events.ts";
import { LineSplitter, type SplitLine } from "../servers/lines.ts";
import type { HerdSnapshot, RecordSnapshot, ServerState } from "../servers/snapshot.ts";
import { compareRecords, parseLocation } from "../servers/record.ts";
import { MAX_OBSERVER_LINE } from "../servers/limits.ts";
import {
  isWireName,
  type ObservedRecord,
  type ObservedState,
  type ObserverMessage,
  parseObserverLine,
} from "../servers/wire.ts";
import { closeQuietly } from "../servers/io.ts";
import { boundedEvent } from "./observed_event.ts";
import { boundedMetrics } from "./observed_metrics.ts";
import { Backoff, jittered } from "../servers/backoff.ts";
import { withTimeout } from "../servers/timeout.ts";
import { errText } from "../servers/text.ts";

type ServerView = ServerState;

/** Stands for the records of an observed batch that the stream did not name. */
const UNNAMED: ObservedRecord = { client: "", origin: "", diff: "", location: "", time: "" };
type RecordView = RecordSnapshot;

/** The merged snapshot (the same shape as an in-process herd's). */
export type RemoteSnapshot = HerdSnapshot;

/** Options for {@linkcode RemoteHerd}. */
export interface RemoteHerdOptions {
  /** The herd secret (HERD_SECRET or the config's `secret`). */
  secret: string;
  /** The name this observer gives itself (shown in the servers' logs). */
  observer?: string;
  /** First redial delay. Default 250 ms. */
  minBackoffMs?: number;
  /** Longest redial delay. Default 5 s. */
  maxBackoffMs?: number;
  /** Bound on dialling plus the handshake answer. Default 5 s. */
  handshakeTimeoutMs?: number;
  /** Places provider shown until a WHATSAT event names the one in use. */
  places?: string;
  /** Records kept across the herd for the map. Default 2000. */
  maxRecords?: number;
}

/** Connection state of one observer stream, for status displays and tests. */
export type ObserverStatus = "connecting" | "watching" | "backoff" | "stopped";

interface Watch {
  config: ServerConfig;
  status: ObserverStatus;
  /** Latest known state; null before the first STATE. */
  state: ServerView | null;
  /** Clients this server is known to hold (for its record count), and whether that is all. */
  known: Set<string>;
  knownComplete: boolean;
  /** Snapshot records still to come in RECORDS lines after STATE. */
  snapshotLeft: number;
  conn?: Deno.Conn;
  /** Redial delays: reset once a stream is watching. */
  backoff: Backoff;
  timer?: ReturnType<typeof setTimeout>;
  lastError?: string;
  /** The server's own metrics (prom-client JSON) from its last `METRICS` line. */
  metrics?: unknown[];
}

/** The merged view of a herd of separate server processes; see the module doc. */
export class RemoteHerd {
  readonly bus: EventBus = new EventBus();
  readonly #auth: HerdAuth;
  /** The herd's CA when its links and observers use TLS. */
  readonly #tlsCa: string | undefined;
  readonly #observer: string;
  readonly #watches = new Map<string, Watch>();
  readonly #records = new Map<string, RecordView>();
  readonly #minBackoff: number;
  readonly #maxBackoff: number;
  readonly #handshakeTimeout: number;
  readonly #maxRecords: number;
  #places: string;
  #running = false;
  /** The servers' link ports, dialled first on a redial (servers/link_port.ts). */
  #linkPorts = new LinkPortBook();

  constructor(readonly config: HerdConfig, opts: RemoteHerdOptions) {
    this.#auth = new HerdAuth(opts.secret);
    this.#tlsCa = config.tls === undefined ? undefined : loadTlsCa(config.tls);
    this.#observer = opts.observer ?? `dashboard-${Deno.pid}`;
    this.#minBackoff = opts.minBackoffMs ?? 250;
    this.#maxBackoff = opts.maxBackoffMs ?? 5_000;
    this.#handshakeTimeout = opts.handshakeTimeoutMs ?? 5_000;
    this.#maxRecords = opts.maxRecords ?? 2_000;
    this.#places = opts.places ?? "unknown";
    if (!isWireName(this.#observer)) {
      throw new Error(`observer name must be 1-64 of A-Z a-z 0-9 _ . - (got ${this.#observer})`);
    }
    for (const s of config.servers) {
      this.#watches.set(s.name, {
        config: s,
        status: "stopped",
        state: null,
        known: new Set(),
        knownComplete: false,
        snapshotLeft: 0,
        backoff: new Backoff(this.#minBackoff, this.#maxBackoff),
      });
    }
  }

  /** Starts watching every server (returns at once; streams connect in the background). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    for (const w of this.#watches.values()) this.#dial(w);
  }

  /** Stops watching: closes every stream and cancels redials. */
  stop(): Promise<void> {
    this.#running = false;
    for (const w of this.#watches.values()) {
      clearTimeout(w.timer);
      w.timer = undefined;
      closeQuietly(w.conn);
      w.conn = undefined;
      w.status = "stopped";
    }
    return Promise.resolve();
  }

  /** Each server's stream state (and the last error while it is not watching). */
  status(): Record<string, { status: ObserverStatus; error?: string }> {
    const out: Record<string, { status: ObserverStatus; error?: string }> = {};
    for (const [name, w] of this.#watches) {
      out[name] = { status: w.status, ...(w.lastError ? { error: w.lastError } : {}) };
    }
    return out;
  }

  /** Servers (as last seen; unreachable ones stopped), newest records, the Places provider. */
  snapshot(): RemoteSnapshot {
    const servers = [...this.#watches.values()].map((w): ServerView => {
      const c = w.config;
      if (w.status === "watching" && w.state) {
        return {
          ...w.state,
          neighbors: [...w.state.neighbors],
          links: w.state.links.map((l) => ({ ...l })),
        };
      }
      return {
        name: c.name,
        host: c.host,
        port: c.port,
        running: false,
        connections: 0,
        records: w.state?.records ?? 0,
        neighbors: [...c.neighbors],
        links: c.neighbors.map((peer) => ({ peer, up: false })),
      };
    });
    return { servers, records: [...this.#records.values()], places: this.#places };
  }

  #backoff(w: Watch, error: string): void {
    w.conn = undefined;
    const wasWatching = w.status === "watching";
    w.lastError = error;
    if (wasWatching && w.state?.running) {
      // The server (or the path to it) went away: show it stopped, links down.
      const t = Date.now();
      for (const l of w.state.links) {
        if (l.up) {
          this.bus.emit({
            kind: "link.down",
            t,
            server: w.config.name,
            peer: l.peer,
            reason: "observer lost the server",
          });
        }
      }
      this.bus.emit({ kind: "server.down", t, server: w.config.name });
    }
    if (w.state) {
      w.state = {
        ...w.state,
        running: false,
        connections: 0,
        links: w.state.links.map((l) => ({ ...l, up: false })),
      };
    }
    if (!this.#running) {
      w.status = "stopped";
      return;
    }
    w.status = "backoff";
    if (wasWatching) w.backoff.reset();
    const delay = Math.round(jittered(w.backoff.next()));
    w.timer = setTimeout(() => {
      w.timer = undefined;
      this.#dial(w);
    }, delay);
  }

  async #dial(w: Watch): Promise<void> {
    if (!this.#running) return;
    w.status = "connecting";
    const { name, host, port } = w.config;
    const dialHost = host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" ? "::1" : host;
    let conn: Deno.Conn;
    try {
      // The server's link port (asked on its client port: no socket of ours stays on that
      // port), with TLS its configured one, its certificate checked against the herd's CA.
      const dial = this.#tlsCa === undefined
        ? this.#linkPorts.dial({ name, host: dialHost, port }, undefined, this.#handshakeTimeout)
        : dialTls(w.config, this.#tlsCa, undefined, this.#handshakeTimeout);
      conn = await withTimeout<Deno.Conn>(dial, this.#handshakeTimeout, {
        onLate: (late) => closeQuietly(late), // a connection that arrives late is closed
      });
    } catch (err) {
      const at = this.#tlsCa === undefined ? port : w.config.linkPort;
      this.#backoff(w, `connect ${dialHost}:${at}: ${errText(err)}`);
      return;
    }
    if (!this.#running) {
      conn.close();
      return;
    }
    w.conn = conn;
    const splitter = new LineSplitter(MAX_OBSERVER_LINE);
    const started = performance.now();
    const r = await dialHandshake(
      this.#auth,
      conn,
      splitter,
      "observer",
      this.#observer,
      name,
      this.#handshakeTimeout,
    );
    if (!r.ok) {
      closeQuietly(conn);
      this.#linkPorts.failed(name, r.inconclusive);
      this.#backoff(w, `handshake: ${r.reason}`);
      return;
    }
    const left = this.#handshakeTimeout - (performance.now() - started);
    await this.#read(w, conn, splitter, r.rest, Math.max(1, left));
  }

  async #read(
    w: Watch,
    conn: Deno.Conn,
    splitter: LineSplitter,
    rest: SplitLine[],
    stateTimeoutMs: number,
  ): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    let phase: "state" | "events" = "state";
    let error = "closed by the server";
    const handshakeTimer = setTimeout(() => {
      if (phase !== "events") {
        error = "no STATE after the observer handshake";
        closeQuietly(conn);
      }
    }, stateTimeoutMs);
    try {
      let lines = rest;
      outer: while (true) {
        for (const split of lines) {
          if (split.overlong) {
            error = "line too long";
            break outer;
          }
          let m: ObserverMessage | undefined;
          try {
            m = parseObserverLine(split.text);
          } catch (err) {
            // Malformed JSON: fatal in the STATE line, skipped after it.
            if (phase === "state") throw err;
            continue;
          }
          if (phase === "state") {
            if (m?.type !== "STATE") {
              const line = split.text.replace(/\r$/, "");
              error = `expected STATE, got ${JSON.stringify(line.slice(0, 80))}`;
              break outer;
            }
            this.#onState(w, m.state);
            phase = "events";
            clearTimeout(handshakeTimer);
          } else if (m?.type === "RECORDS") this.#onRecords(w, m.records);
          else if (m?.type === "EVENT") this.#onEvent(w, m.event);
          // Well-formed families of this server's own samples only (observed_metrics.ts).
          else if (m?.type === "METRICS") w.metrics = boundedMetrics(m.metrics, w.config.name);
        }
        if (splitter.discarding) {
          error = "line too long";
          break;
        }
        const n = await conn.read(buf);
        if (n === null) break;
        lines = splitter.push(buf.subarray(0, n));
      }
    } catch (err) {
      if (error === "closed by the server") error = errText(err);
    } finally {
      clearTimeout(handshakeTimer);
    }
    closeQuietly(conn);
    if (w.conn === conn || w.conn === undefined) this.#backoff(w, error);
  }

  #onState(w: Watch, st: ObservedState): void {
    if (isProvider(st.places)) this.#places = st.places;
    const wasUp = w.state?.running === true && w.status === "watching";
    // A member's STATE is checked field by field, as its events are: a wrong type kept no
    // stream up (`links: "x"` threw, and the server was redialled for ever) or showed NaN.
    const s: Partial<Record<keyof ServerState, unknown>> =
      typeof st?.server === "object" && st.server !== null ? st.server : {};
    const count = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0 ? v as number : 0;
    const links = Array.isArray(s.links) ? s.links as ServerState["links"] : [];
    const peers = new Set<string>();
    w.state = {
      // The stream is this config server's (the handshake named it): its name and address.
      name: w.config.name,
      host: w.config.host,
      port: w.config.port,
      running: s.running !== false,
      connections: count(s.connections),
      records: count(s.records),
      // Each server of the config once: 10,000 copies of one name were 10,000 links in every
      // snapshot and page (adv15).
      neighbors: Array.isArray(s.neighbors)
        ? [...new Set(s.neighbors)].filter((n): n is string =>
          typeof n === "string" && this.#watches.has(n)
        )
        : w.config.neighbors,
      links: links.filter((l) =>
        typeof l === "object" && l !== null && this.#watches.has(l.peer) && !peers.has(l.peer) &&
        !!peers.add(l.peer)
      )
        .map((l) => ({
          peer: l.peer,
          up: l.up === true,
          // Cut and delayed links show as such (changing them needs the herd's own process).
          ...(l.cut === true ? { cut: true } : {}),
          ...(typeof l.delayMs === "number" && l.delayMs > 0 ? { delayMs: l.delayMs } : {}),
        })),
      ...(typeof s.flood === "object" && s.flood !== null
        ? {
          flood: {
            trees: (s.flood as { trees?: unknown }).trees === true,
            floodedAgain: count((s.flood as { floodedAgain?: unknown }).floodedAgain),
          },
        }
        : {}),
    };
    w.status = "watching";
    w.backoff.reset();
    w.lastError = undefined;
    w.known = new Set();
    const recs = Array.isArray(st.records) ? st.records.filter(wellFormedRecord) : [];
    // Newest first on the wire; merged oldest first so the newest stay when trimming.
    for (let i = recs.length - 1; i >= 0; i--) {
      know(w, recs[i].client);
      this.#merge(recs[i]);
    }
    w.snapshotLeft = typeof st.snapshot === "number" ? st.snapshot : 0;
    w.knownComplete = w.snapshotLeft === 0 && recs.length >= w.state.records;
    if (!wasUp) {
      const t = Date.now();
      this.bus.emit({
        kind: "server.up",
        t,
        server: w.config.name,
        host: w.state.host,
        port: w.state.port,
      });
      for (const l of w.state.links) {
        if (l.up) {
          this.bus.emit({
            kind: "link.up",
            t,
            server: w.config.name,
            peer: l.peer,
            direction: "out",
          });
        }
      }
    }
  }

  /** One chunk of a streamed snapshot, oldest change first. */
  #onRecords(w: Watch, recs: ObservedRecord[]): void {
    for (const r of recs) {
      // Five text fields, as an event's record: a number kept for `origin` made every snapshot
      // after it throw, one for `location` dropped the stream (redialled for ever).
      if (!wellFormedRecord(r)) continue;
      know(w, r.client);
      this.#merge(r);
    }
    w.snapshotLeft -= recs.length;
    if (w.snapshotLeft <= 0 && w.state) w.knownComplete = w.known.size >= w.state.records;
  }

  #merge(r: ObservedRecord): void {
    const old = this.#records.get(r.client);
    if (old && compareRecords(r, old) <= 0) return;
    const pos = parseLocation(r.location);
    if (!pos) return;
    this.#records.delete(r.client); // re-insert: the Map's order is oldest change first
    this.#records.set(r.client, {
      client: r.client,
      origin: r.origin,
      diff: r.diff,
      location: r.location,
      time: r.time,
      ...pos,
    });
    if (this.#records.size > this.#maxRecords) {
      const oldest = this.#records.keys().next().value;
      if (oldest !== undefined) this.#records.delete(oldest);
    }
  }

  /** How many client IDs this view keeps for a server's record count (tests: it is bounded). */
  knownClients(name: string): number {
    return this.#watches.get(name)?.known.size ?? 0;
  }

  /** Each server's own metrics (prom-client JSON), as last reported; servers that never did are left out. */
  metricsJson(): unknown[][] {
    const out: unknown[][] = [];
    for (const w of this.#watches.values()) if (w.metrics !== undefined) out.push(w.metrics);
    return out;
  }

  #onEvent(w: Watch, observed: unknown): void {
    // Rebuilt to its bounded shape first: text cut, no stray nested values, this server's own
    // (a member could send any JSON up to the line limit, and the hub keeps 10,000 events).
    const bounded = boundedEvent(observed, w.config.name);
    if (bounded === undefined) return;
    let e = bounded;
    // Malformed, it is skipped as malformed JSON is (its records feed the map and counts; a
    // field of the wrong type kept in the view made every snapshot after it throw).
    if (e.kind === "location.batch" && !wellFormedBatch(e)) return;
    if (e.kind === "location.accepted" && !wellFormedRecord(e.record)) return;
    if (e.kind === "propagation.sent" || e.kind === "propagation.received") {
      // Observers get a batch's size and its first client IDs only (observe.ts): restore the
      // count, so metrics and the feed count every record. A count no link batch has (or no
      // list) is skipped as malformed: the array was built at any length the line said
      // (10^7: ~80 MB per event; 2^32 dropped the stream).
      const count = (e as { count?: unknown }).count;
      if (
        !Array.isArray(e.records) ||
        (count !== undefined && (!Number.isSafeInteger(count) || (count as number) > MAX_BATCH))
      ) return;
      if (typeof count === "number" && count > e.records.length) {
        const named = e.records;
        e = { ...e, records: Array.from({ length: count }, (_, i) => named[i] ?? UNNAMED) };
      }
    }
    const s = w.state;
    if (s) {
      switch (e.kind) {
        case "client.connect":
          s.connections++;
          break;
        case "client.disconnect":
          s.connections = Math.max(0, s.connections - 1);
          break;
        case "link.up":
        case "link.down": {
          const up = e.kind === "link.up";
          const l = s.links.find((x) => x.peer === e.peer);
          if (l) l.up = up;
          // Links join servers of the config: a peer outside it (any name a line says, each
          // one a link more in every snapshot, without bound) is no link of this herd.
          else if (this.#watches.has(e.peer)) s.links.push({ peer: e.peer, up });
          break;
        }
        case "link.stats": {
          // Its known fields of the right types only: every snapshot (and page) shows them.
          const l = s.links.find((x) => x.peer === e.peer);
          if (l) {
            const num = (v: unknown) => typeof v === "number" && Number.isFinite(v);
            if (e.state === "down" || e.state === "syncing" || e.state === "up") l.state = e.state;
            if (num(e.rttMs) || e.rttMs === null) l.rttMs = e.rttMs;
            if (num(e.behind)) l.behind = e.behind;
            if (num(e.unacked)) l.unacked = e.unacked;
            if (num(e.since)) l.since = e.since;
            l.up = e.state !== "down";
          }
          break;
        }
        case "link.control": {
          const l = s.links.find((x) => x.peer === e.peer);
          if (l) {
            l.cut = e.cut === true;
            l.delayMs = typeof e.delayMs === "number" && Number.isFinite(e.delayMs) ? e.delayMs : 0;
          }
          break;
        }
        case "location.accepted": {
          // A server of this version says what it holds; an older one's count is kept here.
          const held = (e as { held?: unknown }).held;
          if (typeof held === "number" && Number.isSafeInteger(held)) s.records = held;
          else if (!w.known.has(e.record.client) && know(w, e.record.client)) {
            if (w.knownComplete) s.records++;
          }
          break;
        }
        case "location.batch":
          // A catch-up read (servers that send it say what they hold with every location event).
          s.records = e.held;
          break;
        case "server.down":
          s.running = false;
          break;
        case "server.up":
          s.running = true;
          break;
      }
    }
    if (e.kind === "location.accepted") this.#merge(e.record);
    if (e.kind === "location.batch") { for (const r of e.records) this.#merge(r); }
    if (e.kind === "whatsat" && isProvider(e.provider)) this.#places = e.provider;
    this.bus.emit(e);
  }
}

/**
 * The most records a link batch rebuilt from an observed event may count: far above any a server
 * sends (its batches hold 2,048 records by default).
 */
const MAX_BATCH = 65_536;

/**
 * Most client IDs kept per server to count its records when it does not say (`held`: servers
 * before it): far above a snapshot's (observe.ts STATE_RECORDS, 2,000). Each RECORDS line or
 * location event of a new client added one, so a member sending them without end grew the
 * dashboard's heap without bound (adv15); past it the count is the last one known.
 */
export const MAX_KNOWN_CLIENTS = 20_000;

/** Adds `client` to what `w` is known to hold; false (and no longer complete) when full. */
function know(w: Watch, client: string): boolean {
  if (w.known.size >= MAX_KNOWN_CLIENTS) {
    w.knownComplete = false;
    return false;
  }
  w.known.add(client);
  return true;
}

/**
 * A Places provider's name as a server states it (`offline`, `new`, `legacy`): shown in every
 * snapshot, so a member's 200 KB `places` was in every /api/state and page (adv15).
 */
function isProvider(v: unknown): v is string {
  return typeof v === "string" && v.length > 0 && v.length <= 64;
}

/** A `location.batch` from the wire with the fields the view uses, of the right types. */
function wellFormedBatch(e: LocationBatchEvent): boolean {
  const str = (v: unknown) => typeof v === "string";
  return Number.isSafeInteger(e.count) && Number.isSafeInteger(e.held) && str(e.from) &&
    Array.isArray(e.records) &&
    e.records.every((r) => wellFormedRecord(r) && Number.isFinite(r.lat) && Number.isFinite(r.lng));
}

/** A record from the wire whose five fields are text, as the view and every page need them. */
function wellFormedRecord(r: unknown): r is ObservedRecord {
  if (typeof r !== "object" || r === null) return false;
  const f = r as Record<string, unknown>;
  return ["client", "origin", "diff", "location", "time"].every((k) => typeof f[k] === "string");
}
