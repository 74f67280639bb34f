/**
 * A herd in one process: the servers of a config that run here (all of them for `start`, one for
 * `server NAME`), sharing one event bus and one Places provider. The links between them run over
 * in-memory connections (servers/memory_conn.ts) with the same link code, bytes and handshake as
 * over TCP; `tcpLinks` keeps them on loopback TCP. Links to servers elsewhere are TCP (or TLS).
 *
 * @module
 */

import { EventBus } from "./events.ts";
import type { AtFields } from "./record.ts";
import { HerdAuth } from "./auth.ts";
import type { HerdConfig } from "./config.ts";
import { HerdServer, type ServerOptions } from "./server.ts";
import { recordBudget, RecordTable } from "./record_table.ts";
import type { HerdSnapshot } from "./snapshot.ts";
import type { Persistence } from "./persist.ts";
import { compareRecords, parseLocation } from "./record.ts";
import { untilAborted } from "./timeout.ts";
import type { StoredRecord } from "./store.ts";
import type { LoadControlStats } from "./places/load_control.ts";
import type { LinkChange, LinkSettings } from "./link_control.ts";

/** Options for a herd. */
export interface HerdOptions extends Omit<ServerOptions, "persistence" | "inProcess"> {
  secret: string;
  /** Links between the servers of this process over loopback TCP, not in memory (`--tcp-links`). */
  tcpLinks?: boolean;
  /** Names of the servers to run here; default all. */
  only?: readonly string[];
  /** Opens durable storage for a server; absent runs in memory. */
  openPersistence?: (server: string) => Promise<Persistence>;
  /**
   * Bytes of records the servers of this process may hold together (record_table.ts
   * `RecordBudget`; `--max-records-mib`); absent: no bound.
   */
  maxRecordBytes?: number;
}

/** `Herd.setLink` on a pair of servers that is not a link (of this process). */
export class NoSuchLinkError extends Error {
  constructor(a: string, b: string, why = "not a link in the herd's config") {
    super(`${a}–${b}: ${why}`);
    this.name = "NoSuchLinkError";
  }
}

/** Records a snapshot carries at most. */
export const SNAPSHOT_RECORDS = 2000;

/**
 * The servers of a herd that run in this process.
 *
 * @example
 * ```ts
 * import { loadConfig } from "./config.ts";
 * import { SERVER_DEFAULTS } from "./options.ts";
 * import { createOfflineProvider } from "./places/offline.ts";
 *
 * const places = createOfflineProvider();
 * const secret = Deno.env.get("HERD_SECRET")!;
 * const herd = new Herd(await loadConfig(), { ...SERVER_DEFAULTS, places, secret });
 * await herd.start();
 * await herd.stopServer("Hill"); // its links go down; the rest keep serving
 * await herd.startServer("Hill"); // it catches up from its neighbours
 * await herd.stop();
 * ```
 */
export class Herd {
  readonly bus: EventBus = new EventBus();
  readonly config: HerdConfig;
  readonly servers: Map<string, HerdServer> = new Map();
  /** The record bodies its servers share (servers/record_table.ts). */
  readonly records: RecordTable;
  #opts: HerdOptions;
  /** Opened once per server (a promise, so concurrent starts share one open). */
  #persistence = new Map<string, Promise<Persistence>>();
  /** Aborted by `cancelStart` (and `stop`): the start in progress starts no more servers. */
  #starting: AbortController | undefined;

  constructor(config: HerdConfig, opts: HerdOptions) {
    this.config = config;
    this.#opts = opts;
    this.records = new RecordTable(
      opts.maxRecordBytes === undefined ? undefined : recordBudget(opts.maxRecordBytes),
    );
    const auth = new HerdAuth(opts.secret);
    const inProcess = opts.tcpLinks ? undefined : (name: string) => this.servers.get(name);
    const names = new Set(config.servers.map((s) => s.name));
    for (const name of opts.only ?? []) {
      if (!names.has(name)) throw new Error(`no server named ${name} in the config`);
    }
    for (const s of config.servers) {
      if (opts.only !== undefined && !opts.only.includes(s.name)) continue;
      this.servers.set(
        s.name,
        new HerdServer(s, config.servers, this.bus, auth, {
          ...opts,
          tls: config.tls,
          // One table for the servers of this process: a record they all hold is held once.
          records: this.records,
          inProcess,
        }),
      );
    }
  }

  /**
   * Starts every local server; on failure stops those already started and rethrows. Cut short by
   * {@linkcode Herd.cancelStart}: it then resolves with the servers it did not finish stopped.
   */
  async start(): Promise<void> {
    const starting = this.#starting = new AbortController();
    const cancelled = starting.signal;
    // The Places provider's preparation (the offline index, built in a Worker: 0.4-0.7 s of
    // CPU) runs while the servers open their stores, listen and dial (a restarted server's
    // catch-up starts meanwhile); the first WHATSAT after start never waits for it, nor a stop.
    const warming = this.#opts.places.warm?.() ?? Promise.resolve();
    try {
      for (const name of this.servers.keys()) {
        if (cancelled.aborted) break;
        await this.#startServer(name, cancelled);
      }
    } catch (err) {
      await untilAborted(warming, cancelled);
      await this.stop();
      throw err;
    } finally {
      if (this.#starting === starting) this.#starting = undefined;
    }
    await untilAborted(warming, cancelled);
  }

  /**
   * Ends a {@linkcode Herd.start} in progress at once (a SIGTERM during start): the server
   * starting closes its ports and stops waiting for its store, the rest do not start, and the
   * Places index is not waited for. Servers already started keep running until `stop`.
   */
  cancelStart(): void {
    this.#starting?.abort();
    for (const server of this.servers.values()) server.cancelStart();
  }

  /** Stops every local server and closes durable stores. */
  async stop(): Promise<void> {
    this.cancelStart();
    await Promise.all([...this.servers.keys()].map((n) => this.stopServer(n)));
    await Promise.all([...this.#persistence.values()].map(async (p) => (await p).close()));
    this.#persistence.clear();
    this.#opts.places.close?.();
  }

  /** Starts one local server (its durable store is opened once and kept). */
  startServer(name: string): Promise<void> {
    return this.#startServer(name);
  }

  async #startServer(name: string, cancelled?: AbortSignal): Promise<void> {
    const server = this.#server(name);
    const open = this.#opts.openPersistence;
    if (open !== undefined && !this.#persistence.has(name)) {
      const opening = open(name);
      this.#persistence.set(name, opening);
      // A failed open is retried by the next start.
      opening.catch(() => this.#persistence.delete(name));
    }
    server.setPersistence(await this.#persistence.get(name));
    if (cancelled?.aborted) return;
    await server.start();
  }

  /** Stops one local server: listener, connections and links close. */
  async stopServer(name: string): Promise<void> {
    await this.#server(name).stop();
  }

  /**
   * Cuts, restores or delays the link between servers `a` and `b` at every end that runs here
   * (either end's cut stops the link). Throws {@linkcode NoSuchLinkError} when the config has no
   * such link; returns the settings of the ends that run here.
   */
  setLink(a: string, b: string, change: LinkChange): Record<string, LinkSettings> {
    const ends = [[a, b], [b, a]] as const;
    const isLink = ends.some(([x, y]) =>
      this.config.servers.find((s) => s.name === x)?.neighbors.includes(y)
    );
    if (!isLink) throw new NoSuchLinkError(a, b);
    const out: Record<string, LinkSettings> = {};
    for (const [x, y] of ends) {
      const link = this.servers.get(x)?.links.find((l) => l.peer === y);
      if (link !== undefined) out[x] = link.control(change);
    }
    if (Object.keys(out).length === 0) throw new NoSuchLinkError(a, b, "neither end runs here");
    return out;
  }

  #server(name: string): HerdServer {
    const server = this.servers.get(name);
    if (server === undefined) throw new Error(`no local server named ${name}`);
    return server;
  }

  /** Every record every local server holds (the dashboard's client index reads it in slices). */
  *allRecords(): IterableIterator<AtFields> {
    for (const s of this.servers.values()) yield* s.store.values();
  }

  /** The record each local server holds for `client` now (null where it holds none). */
  holdings(client: string): { server: string; running: boolean; record: AtFields | null }[] {
    return [...this.servers].map(([name, s]) => ({
      server: name,
      running: s.running,
      record: s.store.get(client) ?? null,
    }));
  }

  /** Gives every local server its metrics (as JSON) to send on its observer streams. */
  exportMetrics(metricsOf: (server: string) => Promise<unknown>): void {
    for (const s of this.servers.values()) s.metricsExport = () => metricsOf(s.name);
  }

  /** Per local server: listening, and its durable store writable (for /healthz). */
  health(): { server: string; listening: boolean; writable: boolean }[] {
    return [...this.servers.values()].map((s) => ({
      server: s.name,
      listening: s.running,
      writable: s.storeWritable,
    }));
  }

  /** The Places provider's load-control counters (undefined when it has none). */
  placesStats(): LoadControlStats | undefined {
    const places = this.#opts.places as { stats?: () => LoadControlStats };
    return places.stats?.();
  }

  /** Servers, newest records (one per client, the herd's newest), and the provider. */
  snapshot(limit = SNAPSHOT_RECORDS): HerdSnapshot {
    const newest = new Map<string, StoredRecord>();
    for (const s of this.servers.values()) {
      for (const r of s.recentRecords(limit)) {
        const seen = newest.get(r.client);
        if (seen === undefined || compareRecords(r, seen) > 0) newest.set(r.client, r);
      }
    }
    const records = [...newest.values()].slice(0, limit).map((r) => {
      const { lat, lng } = parseLocation(r.location)!;
      return {
        client: r.client,
        origin: r.origin,
        diff: r.diff,
        location: r.location,
        time: r.time,
        lat,
        lng,
      };
    });
    return {
      servers: this.config.servers.map((c) =>
        this.servers.get(c.name)?.state() ?? {
          name: c.name,
          host: c.host,
          port: c.port,
          running: false,
          connections: 0,
          records: 0,
          neighbors: c.neighbors,
          links: c.neighbors.map((peer) => ({
            peer,
            up: false,
            state: "down" as const,
            rttMs: null,
            behind: 0,
            unacked: 0,
            since: 0,
          })),
        }
      ),
      records,
      places: this.#opts.places.name,
    };
  }
}
