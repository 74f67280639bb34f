/**
 * One herd server: listens with `Deno.listen`, answers clients (IAMAT, WHATSAT), owns its
 * records and its links to neighbours, and reports everything as events.
 *
 * @module
 */

import type { CommandVerb, EventBus, LinkStats } from "./events.ts";
import { type FailureReason, type InvalidReason, isFailure } from "./reasons.ts";
import { LinkStatsReporter } from "./link_stats.ts";
import { type AtFields, parseLocation } from "./record.ts";
import type { HerdAuth } from "./auth.ts";
import type { ServerConfig, TlsConfig } from "./config.ts";
import { dialTls, loadTlsFiles, type TlsFiles } from "./tls.ts";
import { TlsFront } from "./tls_front.ts";
import { ClientConnection, type ConnectionOptions, type LineHandler } from "./connection.ts";
import { closeQuietly, writeAll } from "./io.ts";
import { errText } from "./text.ts";
import { hostPort } from "./http_host.ts";
import { silenceTimer, untilAborted, withTimeout } from "./timeout.ts";
import { binaryToBytes, type SplitLine, utf8ToBinary } from "./lines.ts";
import { Link, type LinkOptions, type PeerRecord } from "./peers.ts";
import { ReceiptCountdown } from "./receipts.ts";
import { FloodTrees } from "./flood_tree.ts";
import { FloodHealth, floodHealthTimes } from "./flood_health.ts";
import { acceptHandshake } from "./handshake.ts";
import { LinkPortBook } from "./link_port.ts";
import type { LinkPortMemory } from "./link_port_memory.ts";
import {
  BUSY_LINE,
  formatLinkPort,
  formatWarn,
  formatWelcome,
  HANDSHAKE_TAG,
  parseHello,
  parseLinkPortQuery,
} from "./wire.ts";
import {
  type Command,
  formatAt,
  formatInvalid,
  formatWhatsatReply,
  iamatDiff,
  invalidCommand,
  parseCommand,
  type WhatsatCommand,
} from "./protocol.ts";
import { freshEpoch, RecordStore, type StoredRecord } from "./store.ts";
import type { RecordTable } from "./record_table.ts";
import type { LegacyNearbyResponse, PlacesProvider } from "./places/provider.ts";
import { errorAnswer } from "./places/bodies.ts";
import { formatLegacyJson } from "./places/legacy_json.ts";
import { MAX_OBSERVERS, startObserver } from "./observe.ts";
import { MemoryConn, memoryConnPair } from "./memory_conn.ts";
import { acceptConnections, descriptors } from "./descriptors.ts";
import type { Persistence } from "./persist.ts";
import type { ServerState } from "./snapshot.ts";

/** How long a connection over the client cap has to show it is a handshake (ms). */
const HANDSHAKE_WINDOW_MS = 1000;
/** Bytes read while deciding; whatever came is handed on as the connection's first input. */
const READ_AHEAD = 16 * 1024;
/** A timer this late (ms) means the event loop was stalled. */
const LATE_MS = 100;
/**
 * Longest a just (re)started server's WHATSATs wait for its warm-up (every neighbour's catch-up
 * stream ended, or its dial failed): beyond it a dead herd answers `?` as before.
 */
const WARM_UP_MAX_MS = 3_000;
/**
 * Longest a just (re)started server's AT reply to a new record waits for its links (from when its
 * line was read): a neighbour that accepts but never finishes the handshake held every IAMAT of
 * the first 3 s for 3 s (the handshake timeout). On a box at load 10-27 the records reached the
 * neighbours 0.1-1.4 s after the IAMAT was sent (soak15).
 */
const IAMAT_LINK_WAIT_MS = 1_000;
/**
 * How long a start retries a listen whose port is in use, and how often: an old process of the
 * server may still be exiting (the CS 131 TA scripts restart a server ~1 s after killing it).
 */
const LISTEN_RETRY_MS = 3_000;
const LISTEN_RETRY_STEP_MS = 50;
/** A full record budget's `error` event is repeated at most this often (per server and kind). */
const FULL_REPEAT_MS = 60_000;
/** What `#accept` returns for a newer record the record budget had no room for. */
const FULL = Symbol("full");

/** A just (re)started server's wait for its neighbours' catch-up (see `HerdServer.#warmUp`). */
interface WarmUp {
  done: Promise<void>;
  /** Links whose dial failed since the start. */
  failed: Set<Link>;
  /** Links whose catch-up stream to us completed (CAUGHTUP) since the start. */
  caughtUp: Set<Link>;
  /** The store's head once the record log was read: records up to it came from disk. */
  restoredSeq: number;
  /**
   * Resolved once every link has streamed us its catch-up or had its dial fail since the start
   * (or the warm-up ended): what a new client record's AT reply waits for (`#afterAccept`).
   */
  linked: Promise<void>;
  /** Resolves `linked`. */
  endLinked(): void;
  end(): void;
}

/** Why one command got `?`, filled in where that is decided (only while someone listens). */
interface Outcome {
  reason?: InvalidReason | FailureReason;
  /** A WHATSAT's answer, for the log's summary of its reply (`reply.out`'s `places`). */
  places?: { status: string; results: number };
}

/** Everything a server needs besides its config. */
export interface ServerOptions extends ConnectionOptions {
  places: PlacesProvider;
  /** How long a WHATSAT for an unknown client waits for the record to arrive by flooding. */
  whatsatGraceMs: number;
  /** An IAMAT whose time is more than this many seconds ahead of the server clock is invalid. */
  maxFutureS: number;
  /**
   * The AT reply to a new record waits up to this long for the neighbours' (transitive) receipt
   * of it, so a WHATSAT anywhere after the reply finds it; 0 replies at once.
   */
  receiptWaitMs: number;
  /** Client connections beyond this are refused. */
  maxConnections: number;
  /** Reply to an IAMAT only once its record is on disk (with persistence). */
  syncAck?: boolean;
  /**
   * Send a record only along its origin's tree while the herd is healthy (flood_tree.ts,
   * flood_health.ts); false: on every link, always (`--full-flood`). Default true.
   */
  floodTrees?: boolean;
  link: LinkOptions;
  /** TLS for links and observers (the herd config's `tls`). */
  tls?: TlsConfig;
  /**
   * Where this server's store shares record bodies with the other servers of this process
   * (servers/record_table.ts; the Herd gives its servers one table). Without it, its own.
   */
  records?: RecordTable;
  /**
   * Opens the client port (default `Deno.listen`): `server NAME` hands over the listener it
   * opened before loading the herd (cli/early_listen.ts).
   */
  listen?: (addr: { hostname: string; port: number }) => Deno.TcpListener;
  /** Opens the plain link port (default `Deno.listen`): `server NAME` opened it early too. */
  listenLink?: (addr: { hostname: string; port: number }) => Deno.TcpListener;
  /**
   * The neighbours that run in this process (the Herd's servers), by name: links to them run in
   * memory (servers/memory_conn.ts). Absent, or undefined for a name: TCP (or TLS) as to any.
   */
  inProcess?: (name: string) => HerdServer | undefined;
  /**
   * Where server `name` remembers plain link ports across process restarts, its own and its
   * neighbours' (`server NAME`: servers/link_port_memory.ts); without it, for the process's life.
   */
  linkPorts?: (name: string) => LinkPortMemory | undefined;
}

/**
 * A herd server.
 *
 * @example
 * ```ts
 * import { HerdAuth } from "./auth.ts";
 * import { loadConfig } from "./config.ts";
 * import { EventBus } from "./events.ts";
 * declare const options: ServerOptions; // SERVER_DEFAULTS plus a Places provider
 *
 * const config = await loadConfig();
 * const bus = new EventBus();
 * const auth = new HerdAuth(Deno.env.get("HERD_SECRET")!);
 * const server = new HerdServer(config.servers[0], config.servers, bus, auth, options);
 * await server.start(); // listening; links dialling
 * await server.stop();
 * ```
 */
export class HerdServer implements LineHandler {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly bus: EventBus;
  readonly auth: HerdAuth;
  readonly links: Link[];
  store: RecordStore;
  /** The store's head when it was loaded at this start (peers.ts `LinkHost.loadHead`). */
  loadHead = 0;
  /** Whether {@linkcode HerdServer.renewEpoch} renewed the epoch since this start. */
  #epochRenewed = false;
  /**
   * The newest record stored from a client or from a link past its catch-up: our streams to
   * neighbours that are still catching us up never hold it back (peers.ts, `#waitsForPeer`).
   */
  liveSeq = 0;
  /** The newest record stored from a client (peers.ts: a peer we asked to HOLD waits for no other). */
  clientSeq = 0;
  #config: ServerConfig;
  /** Every server of the herd's config, to tell an unknown server from a non-neighbour. */
  #herdNames: Set<string>;
  #opts: ServerOptions;
  #listener: Deno.Listener | undefined;
  #accepting: Promise<void> | undefined;
  /** With TLS: the link port's listener, the PEMs, and the connections that came through it. */
  #tlsListener: TlsFront | undefined;
  #acceptingTls: Promise<void> | undefined;
  #tlsFiles: TlsFiles | undefined;
  #secure = new WeakSet<ClientConnection>();
  /**
   * Without TLS: the link port (config `linkPort`, or one the system assigns) where links and
   * observers dial, so that none holds a connection to the client port (servers/link_port.ts).
   */
  #linkListener: Deno.Listener | undefined;
  #acceptingLinks: Promise<void> | undefined;
  /** The plain link port of our last start (listened on again first), and where it is kept. */
  #lastLinkPort: number | undefined;
  #linkPortMemory: LinkPortMemory | undefined;
  /** Our neighbours' link ports, dialled first (servers/link_port.ts). */
  #linkPortBook: LinkPortBook;
  /**
   * In-process dials (`dialInProcess`) that came while we start, before our accepts: served
   * once those begin, as a listener's backlog is. Undefined while accepting or stopped.
   */
  #inProcessBacklog: MemoryConn[] | undefined;
  /** In-process connections being served (until handed to a link, or closed). */
  #servingInProcess = new Set<Promise<void>>();
  /**
   * Until every neighbour has caught us up (or WARM_UP_MAX_MS after start), a WHATSAT for a
   * client we do not know, or know only from disk, waits: a server just (re)started has not heard
   * yet what its herd knows. Every neighbour, not the first to finish: that one may be restarted
   * too and know no more than we do (two neighbours dropped together). Undefined once warm, or
   * with no neighbours.
   */
  #warmUp: WarmUp | undefined;
  /** When this run of the server began serving (`performance.now()`); see `#graceApplies`. */
  #servingSince = -Infinity;
  /** Connections the handshake closed (busy, bad proof, ...), with why: they still get a DISCONNECT. */
  #closedInHandshake = new WeakMap<ClientConnection, string>();
  /** When a full record budget was last reported: for a client's record, for a peer's. */
  #fullSaid = [-Infinity, -Infinity];
  #peerConfigs: Map<string, ServerConfig>;
  #conns = new Set<ClientConnection>();
  #observers = new Set<{ close(why?: string): void }>();
  #nextConn = 1;
  #persistence: Persistence | undefined;
  #lifecycle: Promise<void> = Promise.resolve();
  /** Aborted to end the start in progress at once (`cancelStart`); undefined when none runs. */
  #starting: AbortController | undefined;
  /** A store load a cancelled start left running: the next start waits for it first. */
  #abandonedLoad: Promise<void> | undefined;
  #linkStats: LinkStatsReporter;
  /** The flood's trees as this server computes them from the config (none with --full-flood). */
  #trees: FloodTrees | undefined;
  /** Whether the herd is healthy enough for the trees (renewed at each start). */
  #health: FloodHealth | undefined;
  #healthTimer: ReturnType<typeof setInterval> | undefined;
  /** When we last sent a `WARN` (`performance.now()`). */
  #warnedAt = -Infinity;
  /** Records after this may have been skipped by the trees (since the herd turned healthy). */
  #treeFrom = Infinity;
  /** Records numbered again since start because the herd turned degraded (`#treeDegraded`). */
  recordsFloodedAgain = 0;
  /** This server's metrics as JSON, for its observer streams (set by the process, if it has them). */
  metricsExport?: () => Promise<unknown>;

  constructor(
    config: ServerConfig,
    peers: readonly ServerConfig[],
    bus: EventBus,
    auth: HerdAuth,
    opts: ServerOptions,
  ) {
    this.name = config.name;
    this.host = config.host;
    this.port = config.port;
    this.bus = bus;
    this.auth = auth;
    this.#config = config;
    this.#opts = opts;
    this.store = new RecordStore(opts.records);
    const byName = new Map(peers.map((p) => [p.name, p]));
    this.#herdNames = new Set(byName.keys());
    this.#peerConfigs = byName;
    this.links = config.neighbors.map((n, i) => new Link(this, i, byName.get(n)!, opts.link));
    const memory = this.#linkPortMemory = opts.linkPorts?.(config.name);
    this.#lastLinkPort = memory?.self;
    this.#linkPortBook = new LinkPortBook(
      [...memory?.peers ?? []].filter(([n]) => config.neighbors.includes(n)),
      (n, port) => memory?.rememberPeer(n, port),
    );
    this.#linkStats = new LinkStatsReporter(this, opts.link.heartbeatMs);
    // The trees need receipts: a stalled link is seen by them (peers.ts `treeReady`).
    if (opts.floodTrees !== false && opts.receiptWaitMs > 0) {
      this.#trees = new FloodTrees(peers, config.name);
    }
  }

  /** Our config's topology hash (flood_tree.ts); undefined with --full-flood. */
  get treeHash(): string | undefined {
    return this.#trees?.hash;
  }

  /** True while this server sends records along the flood's trees (the herd is healthy). */
  get treesInUse(): boolean {
    return this.#health?.healthy === true;
  }

  /** See `LinkHost.treeSkips`: while healthy, the origins `link` does not carry. */
  treeSkips(link: Link): ReadonlySet<string> | undefined {
    return this.#health?.healthy === true && link.treeReady
      ? this.#trees!.skips(link.peer)
      : undefined;
  }

  /** A link's fitness for the trees may have changed: look at the herd's health at once. */
  floodChanged(_link: Link): void {
    this.#floodTick();
  }

  /** A `WARN` came: pass it on once, and stop using the trees (flood_health.ts). */
  warned(server: string, n: number, from: Link): void {
    const h = this.#health;
    // Only the herd's names: numbers kept per name, so a peer cannot grow the map at will.
    if (h === undefined || !this.#herdNames.has(server)) return;
    const was = h.healthy;
    if (h.warned(server, n, performance.now())) {
      const line = formatWarn(server, n);
      for (const l of this.links) if (l !== from) l.sendControl(line);
    }
    if (was && !h.healthy) this.#treeDegraded(performance.now());
  }

  /**
   * Every quarter heartbeat, and whenever a link changes: a link of ours in trouble sends a
   * `WARN` (at most one per half heartbeat), and the herd's health is updated.
   */
  #floodTick(): void {
    const h = this.#health;
    if (h === undefined || this.#healthTimer === undefined) return;
    const now = performance.now();
    const trouble = this.links.some((l) => !l.treeReady);
    if (trouble && now - this.#warnedAt >= this.#opts.link.heartbeatMs / 2) {
      this.#warnedAt = now;
      const line = formatWarn(this.name, h.nextWarning());
      for (const l of this.links) l.sendControl(line);
    }
    const turn = h.update(trouble, now, this.store.headSeq);
    if (turn === "healthy") {
      // A link whose stream is behind may skip records stored before now: from its cursor on.
      let from = this.store.headSeq;
      for (const l of this.links) from = Math.min(from, this.store.headSeq - l.stats().behind);
      this.#treeFrom = from;
    } else if (turn === "degraded") this.#treeDegraded(now);
  }

  /**
   * The herd turned degraded: the records our links may have skipped by the trees within the
   * window (flood_health.ts) are numbered again, so every link's stream (and a catch-up after a
   * reconnect) carries them to every neighbour not known to hold them.
   */
  #treeDegraded(now: number): void {
    const from = Math.max(this.#treeFrom, this.#health!.windowStart(now));
    this.#treeFrom = Infinity;
    if (from >= this.store.headSeq) return;
    const persistence = this.#persistence;
    const n = this.store.restamp(
      from,
      persistence === undefined ? undefined : (r) => {
        persistence.saved(r);
      },
    );
    this.recordsFloodedAgain += n;
    if (n > 0) { for (const link of this.links) link.notify(); }
  }

  /** True while listening. */
  get running(): boolean {
    return this.#listener !== undefined;
  }

  /** Whether this server sends and waits for receipts of new records (--receipt-wait-ms > 0). */
  get receipts(): boolean {
    return this.#opts.receiptWaitMs > 0;
  }

  /** The Places provider's name. */
  get places(): string {
    return this.#opts.places.name;
  }

  /** False while its durable store cannot be written (a full disk); true without one. */
  get storeWritable(): boolean {
    return this.#persistence?.writable ?? true;
  }

  /** Open client connections. */
  get connections(): number {
    return this.#conns.size;
  }

  /**
   * Runs one start or stop after the ones before it: each awaits (the store loading, the
   * connections closing), and interleaved they left a server reported stopped with its links
   * relaying, or listening with its links stopped.
   */
  #serialised(step: () => Promise<void>): Promise<void> {
    const next = this.#lifecycle.then(step);
    this.#lifecycle = next.catch(() => {});
    return next;
  }

  /** Listens, loads stored records, and starts the links. Throws a clear error when the port is taken. */
  start(): Promise<void> {
    return this.#serialised(() => this.#start());
  }

  /**
   * Closes the listener, every connection and every link. Asked for during a start, it ends that
   * start at once first (`cancelStart`).
   */
  stop(): Promise<void> {
    this.cancelStart();
    return this.#serialised(() => this.#stop());
  }

  /**
   * Ends a start in progress at once: its ports close now, and it no longer waits for its listen
   * or its store's load (seconds under load); it resolves with the server stopped. Nothing was
   * accepted yet, so nothing acknowledged is lost. No-op when no start runs.
   */
  cancelStart(): void {
    this.#starting?.abort();
  }

  async #start(): Promise<void> {
    if (this.#listener !== undefined) return;
    const starting = this.#starting = new AbortController();
    try {
      await this.#startListening(starting.signal);
    } finally {
      this.#starting = undefined;
    }
  }

  async #startListening(cancelled: AbortSignal): Promise<void> {
    // A load a cancelled start left behind fills the store it was given: let it finish first.
    await this.#abandonedLoad;
    this.#abandonedLoad = undefined;
    if (cancelled.aborted) return;
    if (this.#opts.tls !== undefined) this.#tlsFiles = loadTlsFiles(this.#opts.tls, this.name);
    const closeNow = () => this.#closeListeners();
    cancelled.addEventListener("abort", closeNow);
    const retryUntil = performance.now() + LISTEN_RETRY_MS;
    try {
      const listener = await this.#listen(
        this.port,
        () => (this.#opts.listen ?? Deno.listen)({ hostname: this.host, port: this.port }),
        retryUntil,
        cancelled,
      );
      if (listener === undefined) return;
      this.#listener = listener;
      this.#inProcessBacklog = [];
      // The link port: TLS (its front), or plain (config `linkPort`, else the system's choice).
      const files = this.#tlsFiles;
      const linkPort = this.#config.linkPort ?? 0;
      if (files !== undefined) {
        this.#tlsListener = await this.#listen(
          linkPort,
          () => this.#listenLinks(files),
          retryUntil,
          cancelled,
        );
      } else {
        this.#linkListener = await this.#listenPlainLink(linkPort, retryUntil, cancelled);
      }
      if (cancelled.aborted) return void this.#closeListeners();
      // A restarted server starts from its durable store, or empty (and catches up from peers).
      // The old store lets go of its records, so the process's shared table does not keep them.
      this.store.dispose();
      this.store = new RecordStore(this.#opts.records);
      this.liveSeq = this.clientSeq = 0;
      // Marks describe what this store holds, so they go (or come back from disk) with it.
      for (const link of this.links) link.mark = { epoch: "-", seq: 0 };
      const loading = this.#persistence?.load(this.store, this.links, this.bus);
      if (loading !== undefined) {
        await untilAborted(loading, cancelled);
        if (cancelled.aborted) {
          this.#abandonedLoad = loading.catch(() => {});
          return;
        }
      }
      this.loadHead = this.store.headSeq;
      this.#epochRenewed = false;
    } catch (err) {
      // Not started: no listener left behind claiming a port.
      this.#closeListeners();
      throw err;
    } finally {
      cancelled.removeEventListener("abort", closeNow);
    }
    const listener = this.#listener;
    this.bus.emit({
      kind: "server.up",
      t: Date.now(),
      server: this.name,
      host: this.host,
      port: this.port,
    });
    this.#accepting = this.#acceptLoop(listener, false);
    if (this.#tlsListener !== undefined) {
      this.#acceptingTls = this.#acceptLoop(this.#tlsListener, true);
    }
    if (this.#linkListener !== undefined) {
      this.#acceptingLinks = this.#acceptLoop(this.#linkListener, true);
    }
    this.#warmUp = this.links.length > 0 && this.#opts.whatsatGraceMs > 0
      ? this.#warming()
      : undefined;
    this.#servingSince = performance.now();
    if (this.#trees !== undefined) {
      const hb = this.#opts.link.heartbeatMs;
      this.#health = new FloodHealth(this.name, floodHealthTimes(hb), performance.now());
      this.#treeFrom = Infinity;
      this.#healthTimer = setInterval(() => this.#floodTick(), Math.max(50, hb / 4));
    }
    for (const link of this.links) link.start();
    this.#linkStats.start();
    // In-process dials that came while we loaded are served now, as a listener's backlog is.
    const backlog = this.#inProcessBacklog;
    this.#inProcessBacklog = undefined;
    for (const conn of backlog ?? []) this.#serveInProcess(conn);
  }

  #warming(): WarmUp {
    const { promise, resolve } = Promise.withResolvers<void>();
    const linked = Promise.withResolvers<void>();
    const warm: WarmUp = {
      done: promise,
      failed: new Set(),
      caughtUp: new Set(),
      restoredSeq: this.store.headSeq,
      linked: linked.promise,
      endLinked: linked.resolve,
      end: () => {
        clearTimeout(timer);
        if (this.#warmUp === warm) this.#warmUp = undefined;
        linked.resolve();
        resolve();
      },
    };
    const timer = setTimeout(warm.end, WARM_UP_MAX_MS);
    return warm;
  }

  /**
   * The plain link port: the configured one, else the one we had last time if it is free (so
   * neighbours that knew it redial without asking our client port), else the system's choice.
   * Undefined when the start was cancelled meanwhile.
   */
  async #listenPlainLink(
    configured: number,
    retryUntil: number,
    cancelled: AbortSignal,
  ): Promise<Deno.Listener | undefined> {
    const listen = (port: number) =>
      (this.#opts.listenLink ?? Deno.listen)({ hostname: this.host, port });
    const again = this.#lastLinkPort;
    const ours = (p: number) =>
      [...this.#peerConfigs.values()].some((s) => s.port === p || s.linkPort === p);
    let listener: Deno.Listener | undefined;
    if (configured === 0 && again !== undefined && !ours(again)) {
      try {
        listener = listen(again);
      } catch {
        // Taken since (or never ours to take): a new one; neighbours ask for it.
      }
    }
    listener ??= await this.#listen(configured, () => listen(configured), retryUntil, cancelled);
    if (listener === undefined) return undefined;
    if (configured === 0) {
      const port = (listener.addr as Deno.NetAddr).port;
      this.#lastLinkPort = port;
      this.#linkPortMemory?.rememberSelf(port);
    }
    return listener;
  }

  /** The TLS link port: a TCP front relaying to a private TLS listener (tls_front.ts). */
  #listenLinks(files: TlsFiles): TlsFront {
    return new TlsFront({
      hostname: this.host,
      port: this.#config.linkPort!,
      files,
      onError: (message) =>
        this.bus.emit({
          kind: "error",
          t: Date.now(),
          server: this.name,
          reason: "accept",
          message,
        }),
      onRejected: (remote, reason) =>
        this.bus.emit({ kind: "peer.rejected", t: Date.now(), server: this.name, remote, reason }),
    });
  }

  /** Closes the client and link ports' listeners (and refuses in-process dials from now on). */
  #closeListeners(): void {
    for (const l of [this.#listener, this.#tlsListener, this.#linkListener]) closeQuietly(l);
    this.#listener = this.#tlsListener = this.#linkListener = undefined;
    for (const conn of this.#inProcessBacklog ?? []) closeQuietly(conn);
    this.#inProcessBacklog = undefined;
  }

  /**
   * Listens; a port in use is tried again every LISTEN_RETRY_STEP_MS until `retryUntil` (an old
   * process of ours may still be exiting), then a clear error. Undefined once `cancelled`.
   */
  async #listen<L>(
    port: number,
    listen: () => L,
    retryUntil: number,
    cancelled: AbortSignal,
  ): Promise<L | undefined> {
    for (;;) {
      if (cancelled.aborted) return undefined;
      try {
        return listen();
      } catch (err) {
        if (!(err instanceof Deno.errors.AddrInUse)) {
          throw new Error(
            `${this.name}: cannot listen on ${hostPort(this.host, port)}: ${
              (err as Error).message
            }`,
          );
        }
        if (performance.now() >= retryUntil) {
          throw new Error(`${this.name}: port ${port} on ${this.host} is already in use`);
        }
      }
      const step = new Promise((r) => setTimeout(r, LISTEN_RETRY_STEP_MS));
      await untilAborted(step, cancelled);
    }
  }

  /** The store of neighbour `peer` when it runs in this process with in-memory links. */
  peerStore(peer: string): RecordStore | undefined {
    return this.#opts.inProcess?.(peer)?.store;
  }

  /**
   * Opens a link to a neighbour: TLS to its link port when the herd uses TLS, else its plain
   * link port, asked on its client port (its client port itself when it is an older server).
   */
  connectPeer(peer: string, signal?: AbortSignal): Promise<Deno.Conn> {
    const local = this.#opts.inProcess?.(peer);
    if (local !== undefined) return local.dialInProcess();
    const config = this.#peerConfigs.get(peer)!;
    if (this.#tlsFiles !== undefined) return dialTls(config, this.#tlsFiles.ca, signal);
    return this.#linkPortBook.dial(config, signal);
  }

  /**
   * A neighbour of this process dials us in memory: what connecting to our link port does over
   * TCP, without the socket. Refused (`ConnectionRefused`) while we are stopped, so its dials
   * fail and back off as they would against a closed port; while we start, held until we accept.
   */
  dialInProcess(): Promise<Deno.Conn> {
    if (this.#listener === undefined) {
      return Promise.reject(new Deno.errors.ConnectionRefused(`${this.name} is not running`));
    }
    const [dialled, accepted] = memoryConnPair();
    if (this.#inProcessBacklog !== undefined) this.#inProcessBacklog.push(accepted);
    else this.#serveInProcess(accepted);
    return Promise.resolve(dialled);
  }

  /** Serves an in-process connection as one accepted on the link port (handshake or nothing). */
  #serveInProcess(conn: MemoryConn): void {
    const p = this.#serveSafely(conn, true);
    this.#servingInProcess.add(p);
    p.finally(() => this.#servingInProcess.delete(p));
  }

  async #stop(): Promise<void> {
    if (this.#listener === undefined) return;
    this.#closeListeners();
    this.#warmUp?.end();
    if (this.#healthTimer !== undefined) clearInterval(this.#healthTimer);
    this.#healthTimer = undefined;
    for (const link of this.links) link.stop();
    this.#linkStats.report();
    this.#linkStats.stop();
    for (const c of this.#conns) c.close("server stopping");
    for (const o of this.#observers) o.close();
    await this.#accepting;
    await this.#acceptingTls;
    await this.#acceptingLinks;
    await Promise.allSettled([...this.#servingInProcess]);
    // A clean stop: the next start of this server (here, or after the process) keeps its epoch.
    await this.#persistence?.stopped();
    this.bus.emit({ kind: "server.down", t: Date.now(), server: this.name });
  }

  /**
   * A neighbour holds records of this store's epoch numbered past what the store had at its
   * start (a data dir restored from an older copy): the next records would reuse their numbers.
   * A fresh epoch, on disk at once, and every link comes back up with it: each neighbour then
   * resends its whole log (the lost records with it) and takes ours from the start.
   */
  renewEpoch(peer: string, mark: number): boolean {
    // Once per start: the epoch renewed here was born here, so no neighbour can hold records of
    // it we never sent, and a peer that claims some is lying. One SYNC line each made the herd
    // resend every store both ways, for ever (adv16).
    if (this.#epochRenewed) {
      this.bus.emit({
        kind: "error",
        t: Date.now(),
        server: this.name,
        reason: "record-invalid",
        message: `${peer} claims records numbered up to ${mark} in this server's epoch, renewed ` +
          `since this start and never sent that far: ignored`,
      });
      return false;
    }
    this.#epochRenewed = true;
    const had = this.loadHead;
    this.store.epoch = freshEpoch();
    this.loadHead = this.store.headSeq;
    this.#persistence?.epochRenewed(this.store.epoch);
    this.bus.emit({
      kind: "error",
      t: Date.now(),
      server: this.name,
      reason: "unclean-stop",
      message: `${peer} got records numbered up to ${mark} in this epoch, and this store had ` +
        `${had} at its start (a data dir restored from an older copy?): a fresh epoch, resyncing ` +
        `fully with every neighbour`,
    });
    for (const link of this.links) link.reconnect("epoch renewed");
    return true;
  }

  /** Sets (or clears) the durable store used from the next start on. */
  setPersistence(persistence: Persistence | undefined): void {
    this.#persistence = persistence;
  }

  /** This server's state for snapshots. */
  state(): ServerState {
    return {
      name: this.name,
      host: this.host,
      port: this.port,
      running: this.running,
      connections: this.#conns.size,
      records: this.store.size,
      neighbors: this.#config.neighbors,
      links: this.links.map((l) => ({ up: l.up, ...l.stats(), ...linkControlState(l) })),
      ...(this.#trees === undefined
        ? {}
        : { flood: { trees: this.treesInUse, floodedAgain: this.recordsFloodedAgain } }),
    };
  }

  /** Each link's state, round trip, records behind and last change. */
  linkStats(): LinkStats[] {
    return this.links.map((l) => l.stats());
  }

  /** Up to `limit` records, most recently changed first. */
  recentRecords(limit: number): StoredRecord[] {
    return this.store.recent(limit);
  }

  async #acceptLoop(listener: Deno.Listener | TlsFront, secure: boolean): Promise<void> {
    const pending = new Set<Promise<void>>();
    const failed = (message: string) =>
      this.bus.emit({ kind: "error", t: Date.now(), server: this.name, reason: "accept", message });
    // A TLS link port hands over connections once their TLS handshake is done, in time.
    // `secure`: a link port, TLS (its front) or (without TLS in the herd) plain.
    const conns = listener instanceof TlsFront
      ? listener.accepted()
      : acceptConnections(listener, failed);
    for await (const conn of conns) {
      const p = this.#serveSafely(conn, secure);
      pending.add(p);
      p.finally(() => pending.delete(p));
    }
    await Promise.allSettled([...pending]);
  }

  /** A bug in serving one connection ends that connection, never the process. */
  #serveSafely(conn: Deno.Conn, secure: boolean): Promise<void> {
    return this.#serve(conn, secure).catch((err) => {
      this.bus.emit({
        kind: "error",
        t: Date.now(),
        server: this.name,
        reason: "internal",
        message: `serving a connection failed: ${(err as Error)?.message ?? err}`,
      });
      closeQuietly(conn);
    });
  }

  /** Refuses a connection at once with one line, closing it. */
  async #refuse(conn: Deno.Conn, remote: string, reason: string): Promise<void> {
    this.bus.emit({ kind: "client.refused", t: Date.now(), server: this.name, remote, reason });
    try {
      await writeAll(conn, binaryToBytes(`? server busy: ${reason}\n`));
    } catch {
      // the refusal is best effort
    }
    closeQuietly(conn);
  }

  /**
   * Over the client cap, a connection may still be a neighbour (a restarted one relinking):
   * its first bytes decide. Resolves the bytes read when they start a `HERD` handshake line,
   * undefined (refuse it) otherwise or when nothing comes within the window.
   */
  async #peekHandshake(conn: Deno.Conn): Promise<Uint8Array | undefined> {
    const want = binaryToBytes(HANDSHAKE_TAG);
    const buf = new Uint8Array(READ_AHEAD);
    let expire!: (v: undefined) => void;
    const expired = new Promise<undefined>((resolve) => (expire = resolve));
    // Late (our loop was stalled) or due in the same poll as a read, the first bytes may be
    // waiting unread: silenceTimer reads them first (refusing a handshake that came in time
    // would reset the connection on unread bytes, and the refusal line is lost).
    const timer = silenceTimer(HANDSHAKE_WINDOW_MS, () => expire(undefined), LATE_MS);
    const read = async () => {
      let got = 0;
      while (got < want.length) {
        const n = await conn.read(buf.subarray(got));
        if (n === null) return undefined;
        for (let i = got; i < Math.min(got + n, want.length); i++) {
          if (buf[i] !== want[i]) return undefined;
        }
        got += n;
      }
      return buf.slice(0, got);
    };
    try {
      // On expiry the read is left pending; the refusal's close ends it.
      return await Promise.race([read(), expired]);
    } catch {
      return undefined;
    } finally {
      timer.clear();
    }
  }

  async #serve(conn: Deno.Conn, secure: boolean): Promise<void> {
    const addr = conn.remoteAddr as Deno.NetAddr;
    const remote = hostPort(addr.hostname, addr.port);
    // The process-wide descriptor budget comes first: past it, nothing is admitted. An
    // in-process connection holds no descriptor.
    const socket = !(conn instanceof MemoryConn);
    if (socket && !descriptors.tryAcquire("hard")) {
      return this.#refuse(conn, remote, "too many open connections");
    }
    let counted = socket;
    const release = () => {
      if (counted) descriptors.release();
      counted = false;
    };
    let initial: Uint8Array | undefined;
    // Past the client caps (this server's, or the process's share for clients), only a peer or
    // observer handshake gets in: links are never refused for the clients' sake.
    const overCap = this.#conns.size >= this.#opts.maxConnections ||
      descriptors.used > descriptors.clientCap;
    if (overCap) {
      initial = await this.#peekHandshake(conn);
      if (initial === undefined) {
        release();
        return this.#refuse(
          conn,
          remote,
          this.#conns.size >= this.#opts.maxConnections
            ? "too many connections"
            : "too many open connections",
        );
      }
    }
    try {
      (conn as Deno.TcpConn).setNoDelay(true);
    } catch {
      // not a TCP socket
    }
    const client = new ClientConnection(conn, this.#nextConn++, this, this.#opts);
    if (secure) this.#secure.add(client);
    this.#conns.add(client);
    this.bus.emit({
      kind: "client.connect",
      t: Date.now(),
      server: this.name,
      conn: client.id,
      remote,
    });
    try {
      // The link port takes links and observers only: there, too, it is a handshake or nothing.
      await client.run(
        initial,
        overCap
          ? "over the client cap and not a handshake"
          : secure
          ? "not a handshake"
          : undefined,
      );
    } finally {
      // A socket handed to a link or observer is counted by measuring from now on.
      release();
    }
    this.#conns.delete(client);
    const closedWhy = this.#closedInHandshake.get(client);
    if (!client.handedOver || closedWhy !== undefined) {
      this.bus.emit({
        kind: "client.disconnect",
        t: Date.now(),
        server: this.name,
        conn: client.id,
        remote,
        reason: closedWhy ?? client.reason,
      });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // LineHandler: the client protocol.

  handleLine(line: SplitLine, conn: ClientConnection): string | Promise<string> | null {
    const bus = this.bus;
    // An overlong line keeps nothing of its leading whitespace: "" was a blank one (lines.ts).
    const cmd = line.overlong && line.text !== ""
      ? invalidCommand(line.text, "too-long")
      : parseCommand(line.text);
    // A blank line is no command and gets no reply: not logged either (a flood of newlines made
    // 35 times its size in log).
    if (cmd.verb === "BLANK") return null;
    const log = bus.active;
    if (log) {
      bus.emit({
        kind: "line.in",
        t: Date.now(),
        server: this.name,
        conn: conn.id,
        line: line.text,
      });
    }
    // Also where the receipt waits of an IAMAT's record start (#receipts).
    const started = performance.now();
    const outcome: Outcome | undefined = log
      ? { reason: cmd.verb === "INVALID" ? cmd.reason : undefined }
      : undefined;
    let reply: string | Promise<string>;
    // A bug or a bad stored record must cost one `?` reply and an `error` event, never the
    // process: nothing reachable from a client line may throw or reject past this point.
    try {
      reply = this.#reply(cmd, line.text, conn, outcome, started);
    } catch (err) {
      reply = this.#failed(line.text, err, outcome);
    }
    const done = log
      ? (r: string) => {
        this.#emitReply(conn.id, r, outcome!.places);
        this.#emitCommand(cmd, line.text, conn.id, outcome!, started);
        return r;
      }
      : undefined;
    if (typeof reply === "string") return done === undefined ? reply : done(reply);
    // One reaction for a reply that waits: its events, or its failure and then its events (not
    // a `catch` and a `then`, two promises and two reactions per IAMAT).
    return reply.then(done, (err) => {
      const r = this.#failed(line.text, err, outcome);
      return done === undefined ? r : done(r);
    });
  }

  /** The `command` event of an answered command, and an `invalid` event when it was. */
  #emitCommand(
    cmd: Command,
    line: string,
    conn: number,
    outcome: Outcome,
    started: number,
  ): void {
    const verb: CommandVerb = cmd.verb === "IAMAT" || cmd.verb === "WHATSAT"
      ? cmd.verb
      : cmd.verb === "INVALID"
      ? cmd.claimed ?? "other"
      : "other";
    const reason = outcome.reason;
    const failed = isFailure(reason);
    const t = Date.now();
    this.bus.emit({
      kind: "command",
      t,
      server: this.name,
      conn,
      verb,
      result: reason === undefined ? "ok" : failed ? "error" : "invalid",
      reason: reason ?? "",
      seconds: (performance.now() - started) / 1000,
    });
    if (reason !== undefined && !failed) {
      this.bus.emit({ kind: "invalid", t, server: this.name, conn, line, verb, reason });
    }
  }

  /** `? <line>` for a command that is invalid for `reason`. */
  #invalid(line: string, reason: InvalidReason, outcome: Outcome | undefined): string {
    if (outcome !== undefined) outcome.reason = reason;
    return formatInvalid(line);
  }

  /** The reply to one parsed command (blank lines never get here: `handleLine`). */
  #reply(
    cmd: Exclude<Command, { verb: "BLANK" }>,
    line: string,
    conn: ClientConnection,
    outcome: Outcome | undefined,
    started: number,
  ): string | Promise<string> {
    switch (cmd.verb) {
      case "IAMAT": {
        // Receive time: when the line's bytes came, not when its turn (or a partial-line wait) ended.
        const now = conn.receivedNs();
        // Only the receiving server checks: a peer's record is taken as its origin accepted it,
        // so servers with skewed clocks never disagree about it.
        const diff = iamatDiff(now, cmd.time, this.#opts.maxFutureS);
        if (diff === undefined) return this.#invalid(line, "future-time", outcome);
        const fields: AtFields = {
          origin: this.name,
          diff,
          client: cmd.client,
          location: cmd.location,
          time: cmd.time,
        };
        const record = this.#accept(fields, null, cmd.lat, cmd.lng, false, conn);
        if (record === FULL) {
          if (outcome !== undefined) outcome.reason = "full";
          return formatInvalid(line);
        }
        return this.#afterAccept(record, formatAt(fields) + "\n", line, outcome, started);
      }
      case "WHATSAT":
        return this.#whatsat(cmd, line, conn, outcome);
      default:
        return formatInvalid(line);
    }
  }

  /** A command that failed (a bug, a corrupt record): `? <line>`, and an `error` event. */
  #failed(line: string, err: unknown, outcome: Outcome | undefined): string {
    if (outcome !== undefined) outcome.reason = "internal";
    this.bus.emit({
      kind: "error",
      t: Date.now(),
      server: this.name,
      reason: "internal",
      message: `command failed: ${errorText(err)}`,
    });
    return formatInvalid(line);
  }

  /**
   * When the AT reply may go. A new record's waits for the neighbours' receipts of it (bounded
   * by --receipt-wait-ms), so that a WHATSAT anywhere after the reply finds it; even without
   * waiting, it is written after the flood (the links' writes start in a microtask queued when
   * the record was accepted). With --sync-ack, every reply waits until the record (or the newer
   * one that replaced it) is on this server's disk: `? <line>` when the disk cannot take it (it
   * still floods).
   */
  #afterAccept(
    record: StoredRecord | undefined,
    text: string,
    line: string,
    outcome: Outcome | undefined,
    started: number,
    unsentOnly = false,
  ): string | Promise<string> {
    // Just (re)started, links may not be up yet: the record would reach the neighbours only with
    // the catch-up, after the reply (graders send an IAMAT ~0.5 s after a restart and a WHATSAT
    // elsewhere right after its reply). The reply waits for the links (at most IAMAT_LINK_WAIT_MS),
    // then for the receipts of the links that have not sent it yet, bounded from then (one sent
    // in a catch-up is receipted at once: a wait begun after that receipt came would time out).
    const warm = this.#warmUp;
    // Once only: the warm-up may outlast `linked` (a link up after its dial failed), and waiting
    // again on a resolved `linked` would loop in microtasks, starving the event loop.
    if (record !== undefined && warm !== undefined && !unsentOnly) {
      const left = IAMAT_LINK_WAIT_MS - (performance.now() - started);
      return withTimeout(warm.linked, Math.max(0, left)).catch(() => {}).then(() =>
        this.#afterAccept(record, text, line, outcome, performance.now(), true)
      );
    }
    const waits: Promise<unknown>[] = [];
    const durable = this.#opts.syncAck && this.#persistence !== undefined;
    if (durable) waits.push(this.#persistence!.committed());
    if (record !== undefined) {
      const receipts = this.#receipts(record, null, started, unsentOnly);
      // Only the receipts to wait for (the default): one promise, resolved with the reply.
      if (receipts !== undefined && !durable) {
        return new Promise((resolve) => receipts.onSettled(() => resolve(text)));
      }
      if (receipts !== undefined) waits.push(new Promise<void>((r) => receipts.onSettled(r)));
      else if (this.links.some((l) => l.up)) waits.push(Promise.resolve());
    }
    if (waits.length === 0) return text;
    return (waits.length === 1 ? waits[0] : Promise.all(waits)).then(
      () => text,
      () => {
        if (outcome !== undefined) outcome.reason = "not-durable";
        return formatInvalid(line);
      },
    );
  }

  /**
   * Waits (bounded) for every up link but `except` to receipt `record`; undefined when there is
   * nothing to wait for. A receipt that does not come in time is reported and not waited for.
   * `started`: when the record's line was read (a `performance.now()` time, taken per read, not
   * per record): the waits are bounded from then. `unsentOnly`: not the links that sent it already.
   */
  #receipts(
    record: StoredRecord,
    except: Link | null,
    started: number,
    unsentOnly = false,
  ): ReceiptCountdown | undefined {
    const ms = this.#opts.receiptWaitMs;
    if (ms <= 0) return undefined;
    let links: Link[] | undefined;
    // A late link (a receipt timed out, none since) is not waited for: see receipts.ts.
    for (const l of this.links) {
      if (l !== except && l.awaited && !(unsentOnly && l.sent(record.seq))) (links ??= []).push(l);
    }
    if (links === undefined) return undefined;
    const waiting = links;
    // One countdown per record, ticked by the links' callbacks (no promise, no link's own).
    const countdown = new ReceiptCountdown(waiting.length);
    let late: boolean[] | undefined;
    waiting.forEach((l, i) =>
      l.onReceipt(record.seq, started + ms, (receipted) => {
        if (!receipted) (late ??= [])[i] = true;
        countdown.tick();
        if (!countdown.settled || late === undefined) return;
        this.bus.emit({
          kind: "receipt.late",
          t: Date.now(),
          server: this.name,
          client: record.client,
          peers: waiting.filter((_, j) => late![j]).map((l) => l.peer),
          waitedMs: performance.now() - started,
        });
      })
    );
    return countdown;
  }

  #emitReply(conn: number, reply: string, places: Outcome["places"]): void {
    this.bus.emit({ kind: "reply.out", t: Date.now(), server: this.name, conn, reply, places });
  }

  /**
   * A `HERD2 HELLO` first line: a neighbour or an observer dialling. Refusals of the HELLO itself
   * (returns false) leave a plain client connection, which answers the line with `? ...`; once
   * the challenge is sent, a failure closes the connection (returns true).
   */
  async handshake(line: string, conn: ClientConnection, rest: SplitLine[]): Promise<boolean> {
    try {
      return await this.#handshake(line, conn, rest);
    } catch (err) {
      // A failure here costs this one connection, never the process.
      this.bus.emit({
        kind: "error",
        t: Date.now(),
        server: this.name,
        reason: "internal",
        message: `handshake from ${conn.remote} failed: ${errorText(err)}`,
      });
      conn.close("handshake failed");
      return false;
    }
  }

  async #handshake(line: string, conn: ClientConnection, rest: SplitLine[]): Promise<boolean> {
    const remote = conn.remote;
    const reject = (reason: string) => {
      this.bus.emit({ kind: "peer.rejected", t: Date.now(), server: this.name, remote, reason });
    };
    const asked = parseLinkPortQuery(line);
    if (asked !== undefined) return this.#answerLinkPort(asked, conn);
    const hello = parseHello(line);
    let refusal: string | undefined;
    if (this.#tlsFiles !== undefined && !this.#secure.has(conn)) {
      refusal = `handshake on the plain port: links use TLS on port ${this.#config.linkPort}`;
    } else if (hello === undefined) refusal = "malformed handshake";
    else if (hello.to !== this.name) refusal = `handshake for ${hello.to}, not ${this.name}`;
    else if (hello.role === "peer" && !this.#herdNames.has(hello.from)) {
      refusal = `unknown server ${hello.from}`;
    } else if (hello.role === "peer" && !this.#config.neighbors.includes(hello.from)) {
      refusal = `${hello.from} is not a neighbour`;
    }
    if (hello === undefined || refusal !== undefined) {
      reject(refusal!);
      return false;
    }
    const link = hello.role === "peer" ? this.links.find((l) => l.peer === hello.from)! : undefined;
    const close = (text?: string) => {
      this.#closedInHandshake.set(conn, text === BUSY_LINE ? "link busy" : "handshake failed");
      (text === undefined ? Promise.resolve() : writeAll(conn.conn, binaryToBytes(text)))
        .catch(() => {}).finally(() => conn.close());
      return true;
    };
    // A cut link takes no dials (not BUSY: that would have the neighbour redial at once).
    if (link?.cut) {
      this.#closedInHandshake.set(conn, "link cut");
      conn.close();
      return true;
    }
    // One connection per link: checked before the challenge and again after the proof, since
    // our own dial may have started meanwhile.
    if (link?.refusesInbound) return close(BUSY_LINE);
    const r = await acceptHandshake(this.auth, conn.conn, conn.splitter, hello, rest);
    if (!r.ok) {
      reject(r.reason);
      return close();
    }
    if (!this.running) return close();
    this.#conns.delete(conn);
    if (link !== undefined) {
      if (link.refusesInbound) return close(BUSY_LINE);
      link.adopt(conn.conn, conn.splitter, r.rest, formatWelcome("peer", this.name, hello.from));
      return true;
    }
    // Bounded in number (observe.ts MAX_OBSERVERS): the oldest gives way (a Set keeps order).
    if (this.#observers.size >= MAX_OBSERVERS) {
      const oldest = this.#observers.values().next().value!;
      this.#observers.delete(oldest);
      oldest.close(`replaced: over ${MAX_OBSERVERS} observers`);
    }
    // startObserver writes the WATCHING line first, and never calls back before it returns.
    const observer = startObserver(
      this,
      conn.conn,
      hello.from,
      () => this.#observers.delete(observer),
    );
    this.#observers.add(observer);
    return true;
  }

  /**
   * A `HERD2 LINKPORT` question: answered with the plain link port, then closed (returns true).
   * Asked of another server, or with TLS (links dial the configured TLS port), it is a client's
   * bad line (false): the `? ...` an older server answers, too.
   */
  #answerLinkPort(asked: string, conn: ClientConnection): boolean {
    const listener = this.#linkListener;
    if (asked !== this.name || listener === undefined) return false;
    const port = (listener.addr as Deno.NetAddr).port;
    this.#closedInHandshake.set(conn, "answered the link-port question");
    writeAll(conn.conn, binaryToBytes(formatLinkPort(this.name, port)))
      .catch(() => {}).finally(() => conn.close());
    return true;
  }

  /**
   * Stores a record if newer, reports it, and floods it; returns it when it was new, and
   * {@linkcode FULL} when it was newer but the record budget had no room. `conn` is the client
   * connection that sent it.
   */
  #accept(
    fields: AtFields,
    from: Link | null,
    lat?: number,
    lng?: number,
    catchUp = false,
    conn?: ClientConnection,
  ): StoredRecord | typeof FULL | undefined {
    const { result, record } = this.store.offer(fields, from === null ? -1 : from.index, conn);
    const bus = this.bus;
    if (result === "full") this.#full(from === null);
    if (result !== "new") {
      if (bus.active) {
        bus.emit({
          kind: "location.dropped",
          t: Date.now(),
          server: this.name,
          record: fields,
          from: from?.peer ?? null,
          reason: result,
          catchUp,
          conn: conn?.id,
        });
      }
      return result === "full" ? FULL : undefined;
    }
    if (!catchUp) this.liveSeq = record!.seq;
    if (from === null) this.clientSeq = record!.seq;
    // Flood first: the instant a record is accepted, its propagation starts.
    for (const link of this.links) if (link !== from) link.notify();
    this.#persistence?.saved(record!);
    if (bus.active) {
      if (lat === undefined || lng === undefined) ({ lat, lng } = parseLocation(fields.location)!);
      bus.emit({
        kind: "location.accepted",
        t: Date.now(),
        server: this.name,
        record: record!,
        from: from?.peer ?? null,
        lat,
        lng,
        catchUp,
      });
    }
    return record;
  }

  /**
   * The record budget refused a record: an `error` event says so, at most once a minute per
   * server and kind (a client's, a peer's), so a full herd under load logs a line, not a flood.
   */
  #full(fromClient: boolean): void {
    // Monotonic: a wall clock stepped back an hour would silence the report for that hour.
    const now = performance.now();
    const at = fromClient ? 0 : 1;
    if (now - this.#fullSaid[at] < FULL_REPEAT_MS) return;
    this.#fullSaid[at] = now;
    const mib = (this.store.budget / (1024 * 1024)).toFixed(1);
    this.bus.emit({
      kind: "error",
      t: Date.now(),
      server: this.name,
      reason: "records-full",
      message: fromClient
        ? `record budget of ${mib} MiB reached: IAMATs that add a client or grow a record get ?`
        : `record budget of ${mib} MiB and its margin reached: peers' records of new clients dropped`,
    });
  }

  /**
   * Records that arrived on a link: store the newer ones and flood them onwards. Returns, per
   * record, the wait for the onward links' receipts of a record new here (none in a catch-up:
   * no client waits on those). `known`: records of the same read, from a catch-up stream, that
   * the link found we hold already (counted in the batch's event, not offered again).
   */
  receive(
    records: PeerRecord[],
    link: Link,
    known?: readonly AtFields[],
  ): (ReceiptCountdown | undefined)[] {
    const catchUp = link.receivingCatchUp;
    if (this.bus.active) {
      this.bus.emit({
        kind: "propagation.received",
        t: Date.now(),
        server: this.name,
        from: link.peer,
        records: known === undefined ? records : [...records, ...known],
        catchUp,
        ...(known === undefined ? {} : { duplicates: known.length }),
      });
    }
    const waits: (ReceiptCountdown | undefined)[] = [];
    const readAt = link.readAt;
    for (const r of records) {
      const stored = this.#accept(r, link, r.lat, r.lng, catchUp);
      waits.push(
        stored === undefined || stored === FULL || catchUp
          ? undefined
          : this.#receipts(stored, link, readAt),
      );
    }
    return waits;
  }

  /** A neighbour whose dial failed (and that has not dialled us) has no catch-up for us. */
  dialFailed(link: Link, inconclusive: boolean): void {
    // A port we knew from before that fails its handshake is asked for again next time.
    this.#linkPortBook.failed(link.peer, inconclusive);
    const warm = this.#warmUp;
    if (warm === undefined) return;
    warm.failed.add(link);
    this.#endWarmUpIfSettled(warm);
  }

  /**
   * Warm once every neighbour has completed a catch-up stream to us since the start, or is down
   * with nothing coming (its dial failed since the start, or the link is cut). A link that came
   * up after its dial failed is waited for again (within WARM_UP_MAX_MS).
   */
  #endWarmUpIfSettled(warm: WarmUp): void {
    const settled = (l: Link) => warm.caughtUp.has(l) || (!l.up && (warm.failed.has(l) || l.cut));
    if (this.links.every(settled)) return warm.end();
    // IAMATs do not wait for a link whose dial failed since the start, even once it is up: that
    // neighbour was not listening when we started (restarted with us, or five servers started at
    // once), its own WHATSATs wait for its catch-up, which brings the record, and waiting for it
    // held the first replies of a herd started at once by seconds on a loaded box.
    const linked = (l: Link) => warm.caughtUp.has(l) || warm.failed.has(l) || (!l.up && l.cut);
    if (this.links.every(linked)) warm.endLinked();
  }

  /**
   * A link's catch-up stream ended: what that link held back goes now (`Link.#waitsForPeer`).
   * What other links hold back keeps waiting for their own peers' CAUGHTUP: those peers are
   * streaming the same records to us (a restarted server's two neighbours finish moments
   * apart, and released at the first CAUGHTUP every record the slower one had yet to send went
   * back to it: BENCHMARKS.md, "Catch-up of 2026-11-27 (second pass)"). A stream that broke off
   * releases everything, as a live record would.
   */
  catchUpEnded(link: Link, complete: boolean): void {
    // A complete stream brought what that neighbour knew; warm once every neighbour's has.
    const warm = this.#warmUp;
    if (complete && warm !== undefined) {
      warm.caughtUp.add(link);
      this.#endWarmUpIfSettled(warm);
    }
    if (!complete) this.liveSeq = this.store.headSeq;
    for (const link of this.links) link.notify();
  }

  /**
   * Whether another link is up and streaming us a catch-up of at least `min` records (one we did
   * not ask to HOLD): a link whose peer would stream us the same records is asked to HOLD, and
   * gets our DIGEST once none is (peers.ts).
   */
  catchUpElsewhere(link: Link, min: number): boolean {
    return this.links.some((l) => l !== link && l.catchUpExpected >= min);
  }

  /** What the records stored so far take to be written: the record log's flush (none without one). */
  recordsWritten(): Promise<void> | undefined {
    return this.#persistence?.flush();
  }

  /** A link's mark moved: persist it with the records it covers. */
  markAdvanced(link: Link): void {
    this.#persistence?.markMoved(link);
  }

  #whatsat(
    cmd: WhatsatCommand,
    line: string,
    conn: ClientConnection,
    outcome: Outcome | undefined,
  ): string | Promise<string> {
    // The record is taken now (#places reads it before its first await), so a later IAMAT of
    // the same connection never changes this answer.
    const known = this.store.get(cmd.client);
    const warm = this.#warmUp;
    // Only a record from disk may be older than what the herd holds: one stored since the
    // start (a client's IAMAT, a neighbour's record) is answered at once, as on a warm server.
    if (warm !== undefined && (known === undefined || known.seq <= warm.restoredSeq)) {
      return this.#warmWait(warm, known, cmd, line, conn, outcome);
    }
    if (known !== undefined) return this.#places(known, cmd, outcome);
    return this.#graceWait(cmd, line, conn, outcome);
  }

  /**
   * Just (re)started: the neighbours' catch-up brings what we missed, so a WHATSAT waits for it,
   * for a client we do not know and for one we know only from disk alike (the herd may hold a
   * newer record). One wait throughout (a fresh lookup after the catch-up would see this
   * connection's later IAMATs), ended once the warm-up is over (and, for an unknown client, the
   * usual grace has passed too). A known client's wait is under no waiter cap (store.ts
   * `whenNewer`): past one it would be answered from the record on disk, before the catch-up.
   */
  #warmWait(
    warm: WarmUp,
    known: StoredRecord | undefined,
    cmd: WhatsatCommand,
    line: string,
    conn: ClientConnection,
    outcome: Outcome | undefined,
  ): Promise<string> {
    const stop = new AbortController();
    let grace: ReturnType<typeof setTimeout> | undefined;
    warm.done.then(() => {
      if (stop.signal.aborted) return;
      const graceMs = known === undefined && this.#graceApplies() ? this.#opts.whatsatGraceMs : 0;
      grace = setTimeout(() => stop.abort(), graceMs);
    });
    const ms = WARM_UP_MAX_MS + this.#opts.whatsatGraceMs;
    const wait = known === undefined
      ? this.store.whenKnown(cmd.client, ms, conn, stop.signal)
      : this.store.whenNewer(cmd.client, ms, conn, stop.signal);
    return wait.then((r) => {
      stop.abort();
      clearTimeout(grace);
      const record = r ?? known;
      return record === undefined
        ? this.#invalid(line, "unknown-client", outcome)
        : this.#places(record, cmd, outcome);
    });
  }

  /**
   * Whether an unknown client's WHATSAT waits the grace for a record to arrive: while a link is
   * up, and in the first WARM_UP_MAX_MS of a run with neighbours even before one is. Graders start
   * five servers at once and ask right away: a server whose neighbours were not listening yet when
   * it dialled (its warm-up over at once, every dial refused) answered `?` for a record that
   * reached it ~100 ms later, when the links came up.
   */
  #graceApplies(): boolean {
    return this.links.some((l) => l.up) ||
      (this.links.length > 0 && performance.now() - this.#servingSince < WARM_UP_MAX_MS);
  }

  /**
   * A WHATSAT sent right after an IAMAT elsewhere can beat the flood by a hop; wait briefly, for
   * a record from a peer or another connection (never from a later command of this one).
   */
  #graceWait(
    cmd: WhatsatCommand,
    line: string,
    conn: ClientConnection,
    outcome: Outcome | undefined,
  ): string | Promise<string> {
    if (this.#opts.whatsatGraceMs <= 0 || !this.#graceApplies()) {
      return this.#invalid(line, "unknown-client", outcome);
    }
    return this.store.whenKnown(cmd.client, this.#opts.whatsatGraceMs, conn).then((r) =>
      r === undefined
        ? this.#invalid(line, "unknown-client", outcome)
        : this.#places(r, cmd, outcome)
    );
  }

  async #places(
    record: StoredRecord,
    cmd: WhatsatCommand,
    outcome: Outcome | undefined,
  ): Promise<string> {
    const atLine = formatAt(record);
    const { lat, lng } = parseLocation(record.location)!;
    const started = performance.now();
    const provider = this.#opts.places;
    const answer = await provider.search({ lat, lng, radiusKm: cmd.radiusKm, bound: cmd.bound });
    const body = answer.body;
    if (answer.rejected !== undefined) {
      const message = answer.rejected;
      this.bus.emit({ kind: "error", t: Date.now(), server: this.name, reason: "places", message });
    }
    if (outcome !== undefined) {
      outcome.places = { status: body.status, results: body.results.length };
    }
    if (this.bus.active) {
      this.bus.emit({
        kind: "whatsat",
        t: Date.now(),
        server: this.name,
        client: cmd.client,
        radiusKm: cmd.radiusKm,
        bound: cmd.bound,
        provider: provider.name,
        status: body.status,
        count: body.results.length,
        latencyMs: answer.latencyMs ?? performance.now() - started,
        coalesced: answer.coalesced ?? false,
        error: body.error_message,
      });
    }
    return formatWhatsatReply(atLine, utf8ToBinary(this.#placesJson(body, outcome)));
  }

  /** The reply's JSON; a body the formatter refuses (too deep) becomes an error body. */
  #placesJson(body: LegacyNearbyResponse, outcome: Outcome | undefined): string {
    try {
      return formatLegacyJson(body);
    } catch (err) {
      const message = `Places answer could not be formatted: ${errorText(err)}`;
      this.bus.emit({ kind: "error", t: Date.now(), server: this.name, reason: "places", message });
      // The log's summary of the reply names the body actually sent.
      if (outcome !== undefined) outcome.places = { status: "UNKNOWN_ERROR", results: 0 };
      return formatLegacyJson(errorAnswer("UNKNOWN_ERROR", message).body);
    }
  }
}

/** A link's run-time settings for a snapshot: only what differs from normal. */
function linkControlState(l: Link): { cut?: boolean; delayMs?: number } {
  const { cut, delayMs } = l.settings;
  return { ...(cut ? { cut } : {}), ...(delayMs > 0 ? { delayMs } : {}) };
}

/** An error's text for an `error` event: its name and message, no stack. */
function errorText(err: unknown): string {
  // Bounded: an error's message may quote the data that caused it.
  return errText(err, true).slice(0, 500);
}
