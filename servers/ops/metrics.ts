/**
 * The herd's Prometheus metrics (prom-client), one registry per process: counters and histograms
 * from the event bus, gauges read from the herd's snapshot at scrape time (right even for what
 * happened before anyone subscribed), the Places load-control counters, `herd_build_info`, and
 * optionally prom-client's process and runtime metrics.
 *
 * prom-client itself loads at the first scrape ({@linkcode loadPromClient}), not with this module:
 * its evaluation (100 ms idle, 250-500 ms on a loaded box) was the largest single block of a
 * `server` process's start, one the early listener (cli/early_listen.ts) cannot answer through.
 * Counting needs none of it: the families below keep plain numbers from the first event.
 *
 * Labels are server and peer names and closed sets of reasons only (never client names or
 * free text: a label must not take unbounded values). Known series start at 0, so a rate is
 * defined from the first scrape. The list, with the renames from the old hand-written
 * exposition, is in README.md ("Metrics, health and status").
 *
 * @module
 */

import type client from "prom-client";
import type { CommandVerb, ErrorReason, EventBus, HerdEvent } from "../events.ts";
import type { HerdSnapshot } from "../snapshot.ts";
import type { LoadControlStats } from "../places/load_control.ts";
import {
  CLIENT_REFUSE_REASONS,
  clientRefuseReason,
  type FailureReason,
  type InvalidReason,
  PEER_REJECT_REASONS,
  peerRejectReason,
} from "../reasons.ts";

/** What metrics read: the bus, the snapshot, and the Places counters when there are any. */
export interface MetricsSource {
  readonly bus: EventBus;
  /** The herd's state; `limit` caps the records (metrics and /status pass 0: servers only). */
  snapshot(limit?: number): HerdSnapshot;
  placesStats?(): LoadControlStats | undefined;
  /**
   * The servers of this process (listening, store writable); without it every server of the
   * snapshot counts as local (a remote dashboard's view).
   */
  health?(): { server: string; listening: boolean; writable?: boolean }[];
}

/**
 * The snapshot's servers that run in this process (a `server` process's snapshot also names the
 * herd's other servers, as stopped).
 *
 * @example
 * ```ts
 * import type { Herd } from "../herd.ts";
 * declare const herd: Herd;
 * localSnapshot(herd).servers.map((s) => s.name); // ["Hill"]
 * ```
 */
export function localSnapshot(source: MetricsSource): HerdSnapshot {
  // No records: a snapshot's records cost a parse of each (30 KB locations exist), per call.
  const snap = source.snapshot(0);
  if (source.health === undefined) return snap;
  const local = new Set(source.health().map((h) => h.server));
  return { ...snap, servers: snap.servers.filter((s) => local.has(s.name)) };
}

/** Options for {@linkcode HerdMetrics}. */
export interface MetricsOptions {
  /** `herd_build_info{version}`. */
  version?: string;
  /** Also prom-client's process and runtime metrics (CPU, memory, heap, event loop lag). */
  processMetrics?: boolean;
}

/** Latency buckets in seconds: 0.1 ms .. 10 s. */
export const LATENCY_BUCKETS = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

/** Every error reason, checked complete by the compiler. */
const ERROR_REASONS = Object.keys(
  {
    "disk-write": 0,
    "disk-read": 0,
    "record-invalid": 0,
    internal: 0,
    places: 0,
    observer: 0,
    accept: 0,
    "log-write": 0,
    "records-full": 0,
    "unclean-stop": 0,
    "peer-conflict": 0,
  } satisfies Record<ErrorReason, 0>,
);

/** The reasons each verb can be answered `?` for (series started at 0). */
const COMMAND_OUTCOMES: [CommandVerb, "invalid" | "error", InvalidReason | FailureReason][] = [
  ...(["arity", "bad-client", "field-too-long", "bad-time", "bad-location", "future-time"] as const)
    .map((r): [CommandVerb, "invalid", InvalidReason] => ["IAMAT", "invalid", r]),
  ...(["arity", "bad-client", "bad-radius", "bad-bound", "unknown-client"] as const)
    .map((r): [CommandVerb, "invalid", InvalidReason] => ["WHATSAT", "invalid", r]),
  ["other", "invalid", "unknown-verb"],
  ["other", "invalid", "too-long"],
  ["IAMAT", "error", "internal"],
  ["IAMAT", "error", "not-durable"],
  ["IAMAT", "error", "full"],
  ["WHATSAT", "error", "internal"],
];

type Labels = Record<string, string>;

/** The prom-client module, as {@linkcode loadPromClient} gives it. */
export type PromClient = typeof client;

/**
 * The Prometheus text format's content type: prom-client's `Registry.PROMETHEUS_CONTENT_TYPE`
 * (tests/ops_metrics.unit_test.ts compares them), known without loading prom-client.
 */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

let promClient: Promise<PromClient> | undefined;

/**
 * prom-client, loaded on first need (one load per process).
 *
 * @example
 * ```ts
 * const client = await loadPromClient();
 * new client.Registry();
 * ```
 */
export function loadPromClient(): Promise<PromClient> {
  return promClient ??= import("prom-client").then((m) => m.default);
}

/**
 * What a process adds to a metrics registry when it exists (the dashboard's hub series): run
 * once the registry is made, or at once if it already is.
 */
export type RegistryExtension = (registry: client.Registry, client: PromClient) => void;

/**
 * An unlabelled gauge or counter whose value is read at scrape time from whoever keeps it (a
 * running total for a counter).
 *
 * @example
 * ```ts
 * const client = await loadPromClient();
 * const registry = new client.Registry();
 * collectedMetric(client, "gauge", "herd_dashboard_subscribers", "Open streams.", [registry], () => 3);
 * ```
 */
export function collectedMetric(
  client: PromClient,
  type: "gauge" | "counter",
  name: string,
  help: string,
  registers: client.Registry[],
  value: () => number,
): void {
  if (type === "gauge") {
    new client.Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(value());
      },
    });
    return;
  }
  new client.Counter({
    name,
    help,
    registers,
    collect() {
      this.reset();
      this.inc(value());
    },
  });
}

/**
 * Series by label values: one Map level per label, in the order the call sites pass them (every
 * call site of a family passes the same names in the same order). No key string is built per
 * count: the values are the event's own strings, whose hashes V8 keeps. `order` lists the series
 * in the order of their first count, which is prom-client's own order.
 */
class SeriesTable<S> {
  readonly #root = new Map<string, unknown>();
  readonly order: S[] = [];
  readonly #make: (labels: Labels) => S;

  constructor(make: (labels: Labels) => S) {
    this.#make = make;
  }

  get(labels: Labels): S {
    let level = this.#root;
    let last: string | undefined;
    for (const k in labels) {
      if (last !== undefined) {
        let next = level.get(last) as Map<string, unknown> | undefined;
        if (next === undefined) level.set(last, next = new Map());
        level = next;
      }
      last = labels[k];
    }
    let s = level.get(last ?? "") as S | undefined;
    if (s === undefined) {
      s = this.#make(labels);
      level.set(last ?? "", s);
      this.order.push(s);
    }
    return s;
  }

  /**
   * {@linkcode get} by the label values alone, `a`..`d` for `names` in order (1 to 4 of them):
   * the same series, with no labels object and no walk over its keys unless the series is new.
   * The bus's hot kinds (commands, accepted and dropped records, link batches) count through
   * here: ~10 counts per IAMAT.
   */
  at(names: readonly string[], a: string, b = "", c = "", d = ""): S {
    const n = names.length;
    let level = this.#root;
    let last = a;
    if (n > 1) {
      level = this.#level(level, last);
      last = b;
    }
    if (n > 2) {
      level = this.#level(level, last);
      last = c;
    }
    if (n > 3) {
      level = this.#level(level, last);
      last = d;
    }
    let s = level.get(last) as S | undefined;
    if (s === undefined) {
      const values = [a, b, c, d];
      const labels: Labels = {};
      for (let i = 0; i < n; i++) labels[names[i]] = values[i];
      s = this.#make(labels);
      level.set(last, s);
      this.order.push(s);
    }
    return s;
  }

  /** The Map under `key` at `level`, made when missing. */
  #level(level: Map<string, unknown>, key: string): Map<string, unknown> {
    let next = level.get(key) as Map<string, unknown> | undefined;
    if (next === undefined) level.set(key, next = new Map());
    return next;
  }
}

/**
 * A labelled counter kept in plain numbers and handed to prom-client at scrape time (its
 * `collect`): prom-client's `inc` hashes and validates the labels on every call, which on the hot
 * path (every command, every record at every server) was ~6% of a loaded herd's thread. Series
 * keep the order of their first count, as prom-client's own would.
 */
class CounterFamily {
  readonly #series = new SeriesTable((labels) => ({ labels, value: 0 }));
  readonly #name: string;
  readonly #help: string;
  readonly #labelNames: string[];

  constructor(name: string, help: string, labelNames: string[]) {
    this.#name = name;
    this.#help = help;
    this.#labelNames = labelNames;
  }

  /** Its prom-client counter, on `registers` (once, when the registry is made). */
  register(client: PromClient, registers: client.Registry[]): void {
    const series = this.#series.order;
    const [name, help, labelNames] = [this.#name, this.#help, this.#labelNames];
    new client.Counter({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const s of series) this.inc(s.labels, s.value);
      },
    });
  }

  inc(labels: Labels, by = 1): void {
    this.#series.get(labels).value += by;
  }

  /** {@linkcode inc} by `by` of the series with label values `a`..`d` (SeriesTable.at). */
  add(by: number, a: string, b?: string, c?: string, d?: string): void {
    this.#series.at(this.#labelNames, a, b, c, d).value += by;
  }
}

/** One histogram series: counts per bucket (not cumulative; the last is +Inf only), sum, count. */
interface HistogramSeries {
  labels: Labels;
  buckets: number[];
  sum: number;
  count: number;
}

/**
 * A labelled histogram kept in plain numbers (as {@linkcode CounterFamily}). At scrape time its
 * series are written into prom-client's own table (`hashMap`, entries `{labels, bucketValues,
 * sum, count}` as its `zero` makes them): prom-client has no call that adds a bucket count in
 * bulk. tests/ops_metrics.unit_test.ts reads the buckets back, so a prom-client that changes
 * that table fails there, not silently.
 */
class HistogramFamily {
  readonly #series: SeriesTable<HistogramSeries>;
  readonly #bounds: readonly number[];
  readonly #name: string;
  readonly #help: string;
  readonly #labelNames: string[];

  constructor(
    name: string,
    help: string,
    labelNames: string[],
    buckets: readonly number[] = LATENCY_BUCKETS,
  ) {
    this.#name = name;
    this.#help = help;
    this.#labelNames = labelNames;
    this.#bounds = buckets;
    this.#series = new SeriesTable((labels) => ({
      labels,
      buckets: new Array(buckets.length + 1).fill(0),
      sum: 0,
      count: 0,
    }));
  }

  /** Its prom-client histogram, on `registers` (once, when the registry is made). */
  register(client: PromClient, registers: client.Registry[]): void {
    const series = this.#series.order;
    const buckets = this.#bounds;
    const [name, help, labelNames] = [this.#name, this.#help, this.#labelNames];
    new client.Histogram({
      name,
      help,
      labelNames,
      buckets: [...buckets],
      registers,
      collect() {
        // Keys are only told apart here ("s<n>": never an array index, so insertion order holds).
        const table: Record<string, unknown> = {};
        series.forEach((s, n) => {
          const bucketValues: Record<number, number> = {};
          buckets.forEach((b, i) => (bucketValues[b] = s.buckets[i]));
          table[`s${n}`] = { labels: s.labels, bucketValues, sum: s.sum, count: s.count };
        });
        (this as unknown as { hashMap: Record<string, unknown> }).hashMap = table;
      },
    });
  }

  observe(labels: Labels, v: number): void {
    if (!Number.isFinite(v)) return;
    this.#add(this.#series.get(labels), v);
  }

  /** {@linkcode observe} in the series of one label value (SeriesTable.at). */
  observeAt(v: number, a: string): void {
    if (!Number.isFinite(v)) return;
    this.#add(this.#series.at(this.#labelNames, a), v);
  }

  #add(s: HistogramSeries, v: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && v > bounds[i]) i++;
    s.buckets[i]++;
    s.sum += v;
    s.count++;
  }

  zero(labels: Labels): void {
    this.#series.get(labels);
  }
}

/**
 * A registry made on first need: prom-client loads, the owner's metrics are built on it, then
 * the extensions added so far. Series counted before then are in it: the owners keep their
 * counts in plain numbers, which the prom-client metrics read at scrape time.
 */
export class LazyRegistry {
  readonly #build: RegistryExtension;
  readonly #extensions: RegistryExtension[] = [];
  #made: Promise<client.Registry> | undefined;
  #ready: { registry: client.Registry; client: PromClient } | undefined;

  constructor(build: RegistryExtension) {
    this.#build = build;
  }

  /** The registry (the same one every call), made on the first call. */
  get(): Promise<client.Registry> {
    return this.#made ??= loadPromClient().then((client) => {
      const registry = new client.Registry();
      this.#build(registry, client);
      for (const add of this.#extensions.splice(0)) add(registry, client);
      this.#ready = { registry, client };
      return registry;
    });
  }

  /** Runs `add` on the registry once it is made (at once if it is). */
  extend(add: RegistryExtension): void {
    if (this.#ready === undefined) this.#extensions.push(add);
    else add(this.#ready.registry, this.#ready.client);
  }
}

/** What the ops routes serve metrics from: a registry and its rendering. */
export interface MetricsExposition {
  /** The registry, made (prom-client loaded) on the first call or scrape. */
  registry(): Promise<client.Registry>;
  /** Adds series to the registry when it is made (see {@linkcode LazyRegistry.extend}). */
  extend(add: RegistryExtension): void;
  /** The text format's content type, {@linkcode PROMETHEUS_CONTENT_TYPE}. */
  readonly contentType: string;
  render(): Promise<string>;
  close(): void;
}

/** Places statuses Google documents: always label values of their own. */
const GOOGLE_STATUSES = new Set([
  "OK",
  "ZERO_RESULTS",
  "INVALID_REQUEST",
  "OVER_QUERY_LIMIT",
  "REQUEST_DENIED",
  "UNKNOWN_ERROR",
  "NOT_FOUND",
]);
/** Other Places statuses with series of their own; later ones are counted as `other`. */
const MAX_OTHER_STATUSES = 16;

/**
 * The metrics of the herd servers in this process (or, for a remote dashboard, of the servers
 * it watches).
 *
 * @example
 * ```ts
 * import type { Herd } from "../herd.ts";
 * import { VERSION } from "../version.ts";
 * declare const herd: Herd;
 * const metrics = new HerdMetrics(herd, { version: VERSION, processMetrics: true });
 * const text = await metrics.render();
 * metrics.close();
 * ```
 */
export class HerdMetrics implements MetricsExposition {
  readonly #registry: LazyRegistry;
  readonly #source: MetricsSource;
  readonly #off: () => void;
  /** Servers whose series were started at 0. */
  readonly #started = new Set<string>();
  /** Places statuses outside Google's own seen so far, each a label value (see placesStatus). */
  readonly #otherStatuses = new Set<string>();
  /** prom-client's process metrics, started by the first scrape (see render). */
  #processMetrics: boolean;
  /** The servers' state for the scrape in progress (one snapshot per scrape, not per gauge). */
  #scrape: HerdSnapshot | undefined;

  readonly #commands;
  readonly #iamat;
  readonly #whatsat;
  readonly #propagationDelay;
  readonly #accepted;
  readonly #dropped;
  readonly #propagated;
  readonly #received;
  readonly #linkChanges;
  readonly #connTotal;
  readonly #refused;
  readonly #peerRejected;
  readonly #receiptsLate;
  readonly #errors;
  readonly #places;
  readonly #placesLatency;
  readonly #commit;
  readonly #commitFailures;

  constructor(source: MetricsSource, opts: MetricsOptions = {}) {
    this.#source = source;
    // prom-client's metrics are made with the registry, in this order; counting starts now.
    const families: (CounterFamily | HistogramFamily)[] = [];
    const counter = (name: string, help: string, labelNames: string[]) => {
      const family = new CounterFamily(name, help, labelNames);
      families.push(family);
      return family;
    };
    const histogram = (name: string, help: string, labelNames: string[]) => {
      const family = new HistogramFamily(name, help, labelNames);
      families.push(family);
      return family;
    };

    this.#commands = counter(
      "herd_commands_total",
      "Client commands answered, by server, verb, result (ok, invalid, error) and reason.",
      ["server", "verb", "result", "reason"],
    );
    this.#iamat = histogram(
      "herd_iamat_duration_seconds",
      "IAMAT line to reply ready (receipt waits included), per server.",
      ["server"],
    );
    this.#whatsat = histogram(
      "herd_whatsat_duration_seconds",
      "WHATSAT line to reply ready (Places included), per server.",
      ["server"],
    );
    this.#propagationDelay = histogram(
      "herd_propagation_delay_seconds",
      "From the origin server's receipt of an IAMAT to a record storing here (live flooding; " +
        "across hosts it includes their clock difference).",
      ["server"],
    );
    this.#accepted = counter(
      "herd_updates_accepted_total",
      "Location updates stored, by server and where they came from (a peer, or client).",
      ["server", "from"],
    );
    this.#dropped = counter(
      "herd_updates_dropped_total",
      "Location updates not stored, by server, where they came from, and reason.",
      ["server", "from", "reason"],
    );
    this.#propagated = counter(
      "herd_updates_propagated_total",
      "Records sent to a neighbour, per link (server -> peer).",
      ["server", "peer"],
    );
    this.#received = counter(
      "herd_updates_received_total",
      "Records received from a neighbour, per link (server <- peer).",
      ["server", "peer"],
    );
    this.#linkChanges = counter(
      "herd_link_transitions_total",
      "Link state changes seen by server, per peer and new state.",
      ["server", "peer", "state"],
    );
    this.#connTotal = counter(
      "herd_client_connections_total",
      "Client connections accepted.",
      ["server"],
    );
    this.#refused = counter(
      "herd_client_refused_total",
      "Client connections refused, by reason (max-connections, descriptors, other).",
      ["server", "reason"],
    );
    this.#peerRejected = counter(
      "herd_peer_rejected_total",
      "Peer and observer connections rejected, by reason.",
      ["server", "reason"],
    );
    this.#receiptsLate = counter(
      "herd_receipts_late_total",
      "Times a neighbour's receipt did not come in time (it is then not waited for until it receipts again).",
      ["server", "peer"],
    );
    this.#errors = counter("herd_errors_total", "Error events, by server and reason.", [
      "server",
      "reason",
    ]);
    this.#places = counter(
      "herd_places_requests_total",
      "Places queries answered, by server, provider and status.",
      ["server", "provider", "status"],
    );
    this.#placesLatency = histogram(
      "herd_places_duration_seconds",
      "Places provider latency, per server and provider.",
      ["server", "provider"],
    );
    this.#commit = histogram(
      "herd_persist_commit_duration_seconds",
      "Group commits of the record log (append + fdatasync), per server.",
      ["server"],
    );
    this.#commitFailures = counter(
      "herd_persist_commit_failures_total",
      "Group commits that failed (retried with backoff), per server.",
      ["server"],
    );
    const version = opts.version ?? "unknown";
    this.#registry = new LazyRegistry((registry, client) => {
      const registers = [registry];
      for (const family of families) family.register(client, registers);
      this.#gauges(client, registers);
      this.#placesGauges(client, registers);
      buildInfo(client, registers, version);
    });
    this.#processMetrics = opts.processMetrics ?? false;
    this.#startAll();
    this.#off = source.bus.subscribe((e) => this.observe(e));
  }

  /** The registry (prom-client loads on the first call). */
  registry(): Promise<client.Registry> {
    return this.#registry.get();
  }

  extend(add: RegistryExtension): void {
    this.#registry.extend(add);
  }

  /** The exposition's content type (text format 0.0.4). */
  get contentType(): string {
    return PROMETHEUS_CONTENT_TYPE;
  }

  /** The exposition text. */
  async render(): Promise<string> {
    const registry = await this.#registry.get();
    if (this.#processMetrics) {
      // Only a process that is scraped pays for them: their event-loop sampler is a timer that,
      // on a loaded 2-core box, delayed client reads enough for 30 KB pipelined lines to hit the
      // partial-line timeout (tests/observer_snapshot_test.ts). Sampled each second.
      this.#processMetrics = false;
      const client = await loadPromClient();
      client.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 1000 });
      honestProcessMetrics(client, registry);
    }
    this.#scrape = localSnapshot(this.#source);
    try {
      this.#startAll();
      return await registry.metrics();
    } finally {
      this.#scrape = undefined;
    }
  }

  /**
   * One server's series as prom-client JSON (`getMetricsAsJSON`, only the samples labelled with
   * that server): what its observer stream carries, so a remote dashboard shows the server's own
   * counters, not counts from the moment it connected.
   */
  async exportServer(
    server: string,
  ): Promise<client.MetricObjectWithValues<client.MetricValue<string>>[]> {
    const registry = await this.#registry.get();
    this.#scrape = localSnapshot(this.#source);
    const out = [];
    let families;
    try {
      this.#startAll();
      families = await registry.getMetricsAsJSON();
    } finally {
      this.#scrape = undefined;
    }
    for (const family of families) {
      const values = (family.values as client.MetricValue<string>[]).filter((v) =>
        v.labels.server === server
      );
      if (values.length > 0) out.push({ ...family, values });
    }
    return out;
  }

  /** Stops listening to the bus. */
  close(): void {
    this.#off();
  }

  /** Accounts for one event (the bus calls this; tests may too). */
  observe(e: HerdEvent): void {
    const server = e.server;
    switch (e.kind) {
      // The kinds every IAMAT brings (~10 counts) count by label values: SeriesTable.at.
      case "command":
        this.#commands.add(1, server, e.verb, e.result, e.reason);
        if (e.result === "invalid") break;
        if (e.verb === "IAMAT") this.#iamat.observeAt(e.seconds, server);
        if (e.verb === "WHATSAT") {
          this.#whatsat.observe({ server }, e.seconds);
        }
        break;
      case "location.accepted":
        this.#accepted.add(1, server, e.from ?? "client");
        if (e.from !== null && !e.catchUp) {
          // The origin received it at client time + diff (both exact decimals on the wire).
          const at = Number(e.record.time) + Number(e.record.diff);
          const delay = e.t / 1000 - at;
          if (Number.isFinite(delay)) {
            this.#propagationDelay.observeAt(Math.max(0, delay), server);
          }
        }
        break;
      case "location.dropped":
        this.#dropped.add(1, server, e.from ?? "client", e.reason);
        break;
      case "propagation.sent":
        this.#propagated.add(e.records.length, server, e.to);
        break;
      case "propagation.received":
        this.#received.add(e.records.length, server, e.from);
        if (e.duplicates) this.#dropped.add(e.duplicates, server, e.from, "duplicate");
        break;
      case "link.up":
        this.#linkChanges.inc({ server, peer: e.peer, state: "up" });
        break;
      case "link.down":
        this.#linkChanges.inc({ server, peer: e.peer, state: "down" });
        break;
      case "client.connect":
        this.#connTotal.inc({ server });
        break;
      case "client.refused":
        this.#refused.inc({ server, reason: clientRefuseReason(e.reason) });
        break;
      case "peer.rejected":
        this.#peerRejected.inc({ server, reason: peerRejectReason(e.reason) });
        break;
      case "receipt.late":
        for (const peer of e.peers) this.#receiptsLate.inc({ server, peer });
        break;
      case "error":
        this.#errors.inc({ server, reason: e.reason });
        break;
      case "whatsat":
        this.#places.inc({ server, provider: e.provider, status: this.#placesStatus(e.status) });
        this.#placesLatency.observe({ server, provider: e.provider }, e.latencyMs / 1000);
        break;
      case "persist.commit":
        if (e.ok) this.#commit.observe({ server }, e.seconds);
        else this.#commitFailures.inc({ server });
        break;
      case "server.up":
        this.#start(server);
        break;
    }
  }

  /**
   * A Places status as a label value. The status comes from upstream (a proxy, or whatever
   * `--places-url` names): past Google's own and a few others, every new one is `other`, or
   * an upstream that answers a new status each time makes a series each, for good.
   */
  #placesStatus(status: string): string {
    if (GOOGLE_STATUSES.has(status) || this.#otherStatuses.has(status)) return status;
    if (this.#otherStatuses.size >= MAX_OTHER_STATUSES) return "other";
    this.#otherStatuses.add(status);
    return status;
  }

  /** Starts the known series of every server in the snapshot at 0 (once per server). */
  #startAll(): void {
    for (const s of this.#servers().servers) this.#start(s.name, s.neighbors);
  }

  /** The local servers' state: the scrape's, or a fresh one. */
  #servers(): HerdSnapshot {
    return this.#scrape ?? localSnapshot(this.#source);
  }

  #start(server: string, neighbors?: readonly string[]): void {
    if (this.#started.has(server)) return;
    if (neighbors === undefined) {
      neighbors = this.#servers().servers.find((s) => s.name === server)?.neighbors;
      if (neighbors === undefined) return;
    }
    this.#started.add(server);
    const s = { server };
    for (const verb of ["IAMAT", "WHATSAT"]) {
      this.#commands.inc({ ...s, verb, result: "ok", reason: "" }, 0);
    }
    for (const [verb, result, reason] of COMMAND_OUTCOMES) {
      this.#commands.inc({ ...s, verb, result, reason }, 0);
    }
    this.#iamat.zero(s);
    this.#whatsat.zero(s);
    this.#propagationDelay.zero(s);
    this.#accepted.inc({ ...s, from: "client" }, 0);
    for (const reason of ["stale", "duplicate", "full"]) {
      this.#dropped.inc({ ...s, from: "client", reason }, 0);
    }
    this.#connTotal.inc(s, 0);
    for (const reason of CLIENT_REFUSE_REASONS) this.#refused.inc({ ...s, reason }, 0);
    for (const reason of PEER_REJECT_REASONS) this.#peerRejected.inc({ ...s, reason }, 0);
    for (const reason of ERROR_REASONS) this.#errors.inc({ ...s, reason }, 0);
    this.#commit.zero(s);
    this.#commitFailures.inc(s, 0);
    for (const peer of neighbors) {
      const l: Labels = { ...s, peer };
      this.#propagated.inc(l, 0);
      this.#received.inc(l, 0);
      this.#receiptsLate.inc(l, 0);
      for (const state of ["up", "down"]) this.#linkChanges.inc({ ...l, state }, 0);
    }
  }

  /** Gauges read from the snapshot at scrape time. */
  #gauges(client: PromClient, registers: client.Registry[]): void {
    const servers = () => this.#servers();
    type Row = [Labels, number];
    const gauge = (
      name: string,
      help: string,
      labelNames: string[],
      rows: (snap: HerdSnapshot) => Row[],
    ) =>
      new client.Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          for (const [labels, v] of rows(servers())) this.set(labels, v);
        },
      });
    const perServer = (f: (s: HerdSnapshot["servers"][number]) => number) => (snap: HerdSnapshot) =>
      snap.servers.map((s): Row => [{ server: s.name }, f(s)]);
    const perLink = (
      f: (l: HerdSnapshot["servers"][number]["links"][number]) => number | null | undefined,
    ) =>
    (snap: HerdSnapshot) =>
      snap.servers.flatMap((s) =>
        s.links.flatMap((l): Row[] => {
          const v = f(l);
          return v === null || v === undefined ? [] : [[{ server: s.name, peer: l.peer }, v]];
        })
      );
    gauge(
      "herd_server_running",
      "1 when the server is listening.",
      ["server"],
      perServer((s) => s.running ? 1 : 0),
    );
    const flooding = (
      snap: HerdSnapshot,
      f: (fl: { trees: boolean; floodedAgain: number }) => number,
    ) =>
      snap.servers.flatMap((s): Row[] =>
        s.flood === undefined ? [] : [[{ server: s.name }, f(s.flood)]]
      );
    gauge(
      "herd_flood_trees_in_use",
      "1 while the server sends records along the flood's trees (the herd is healthy), 0 while it floods every link.",
      ["server"],
      (snap) => flooding(snap, (fl) => fl.trees ? 1 : 0),
    );
    gauge(
      "herd_flood_records_resent",
      "Records the server numbered again, since it started, at turns from the trees to the full flood.",
      ["server"],
      (snap) => flooding(snap, (fl) => fl.floodedAgain),
    );
    gauge(
      "herd_client_connections",
      "Open client connections.",
      ["server"],
      perServer((s) => s.connections),
    );
    gauge("herd_records", "Location records stored.", ["server"], perServer((s) => s.records));
    gauge(
      "herd_link_up",
      "1 when the link from server to peer is up.",
      ["server", "peer"],
      perLink((l) => (l.up ? 1 : 0)),
    );
    gauge(
      "herd_link_rtt_seconds",
      "The link's last PING round trip (absent while down or with a peer that never PONGs).",
      ["server", "peer"],
      perLink((l) => (l.rttMs === null || l.rttMs === undefined ? null : l.rttMs / 1000)),
    );
    gauge(
      "herd_link_records_behind",
      "Replication lag: change-log entries not yet sent on the link.",
      ["server", "peer"],
      perLink((l) => l.behind),
    );
    gauge(
      "herd_link_records_unacked",
      "Records sent on the link whose receipt a reply is waiting for.",
      ["server", "peer"],
      perLink((l) => l.unacked),
    );
    gauge(
      "herd_link_last_change_timestamp_seconds",
      "When the link's state (down, syncing, up) last changed.",
      ["server", "peer"],
      perLink((l) => (l.since ? l.since / 1000 : null)),
    );
    gauge(
      "herd_places_provider_info",
      "The Places provider in use.",
      ["provider"],
      (snap) => [[{ provider: snap.places }, 1]],
    );
  }

  /** The Places load-control counters (`servers/places/load_control.ts`), read at scrape time. */
  #placesGauges(client: PromClient, registers: client.Registry[]): void {
    const source = this.#source;
    const read = (key: keyof LoadControlStats) => () => source.placesStats?.()?.[key] ?? 0;
    const gauge = (name: string, help: string, value: () => number) =>
      collectedMetric(client, "gauge", name, help, registers, value);
    const counter = (name: string, help: string, value: () => number) =>
      collectedMetric(client, "counter", name, help, registers, value);
    gauge("herd_places_active", "Places upstream requests in flight now.", read("active"));
    gauge("herd_places_queued", "Places queries waiting for a slot now.", read("queued"));
    gauge("herd_places_active_peak", "Most Places requests in flight at once.", read("peakActive"));
    counter(
      "herd_places_upstream_requests_total",
      "Places upstream requests started.",
      read("upstreamRequests"),
    );
    counter(
      "herd_places_coalesced_total",
      "Places queries answered by sharing an in-flight request.",
      read("coalesced"),
    );
    counter(
      "herd_places_cache_hits_total",
      "Places queries answered from the cache.",
      read("cacheHits"),
    );
    counter("herd_places_timeouts_total", "Places queries that timed out.", read("timeouts"));
    counter(
      "herd_places_rejected_total",
      "Places queries refused because the queue was full.",
      read("rejected"),
    );
  }
}

/**
 * prom-client reads RSS and open descriptors from /proc/self, which Deno opens only to
 * `--allow-all`; under a task's scoped permissions it would report 0. RSS comes from
 * `Deno.memoryUsage()` instead (no permission needed); descriptor gauges that cannot be read are
 * left out rather than shown as 0.
 */
function honestProcessMetrics(client: PromClient, registry: client.Registry): void {
  let procReadable = true;
  try {
    Deno.readDirSync("/proc/self/fd");
  } catch {
    procReadable = false;
  }
  if (procReadable) return;
  registry.removeSingleMetric("process_resident_memory_bytes");
  registry.removeSingleMetric("process_open_fds");
  registry.removeSingleMetric("process_max_fds");
  registry.removeSingleMetric("process_virtual_memory_bytes");
  registry.removeSingleMetric("process_heap_bytes");
  new client.Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    registers: [registry],
    collect() {
      this.set(Deno.memoryUsage().rss);
    },
  });
}

/**
 * `herd_build_info{version} 1`, on `registers`.
 *
 * @example
 * ```ts
 * const client = await loadPromClient();
 * buildInfo(client, [new client.Registry()], "1.0.0");
 * ```
 */
export function buildInfo(client: PromClient, registers: client.Registry[], version: string): void {
  new client.Gauge({
    name: "herd_build_info",
    help: "The herd's version (always 1).",
    labelNames: ["version"],
    registers,
  }).set({ version }, 1);
}
