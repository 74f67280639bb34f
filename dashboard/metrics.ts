/**
 * Prometheus metrics computed by a subscriber on the herd's event bus, rendered in the text
 * exposition format (version 0.0.4) for `GET /metrics`.
 *
 * Counters come from events; gauges (running, connections, records, link state) are read from
 * the herd's snapshot at scrape time, so they are right even for what happened before the
 * dashboard subscribed. Labels are server and peer names only (never client names: unbounded).
 *
 * @module
 */

import type { EventBus, HerdEvent } from "../servers/events.ts";
import type { HubStats } from "./hub.ts";
import type { HerdSnapshot } from "./types.ts";

/** Histogram bucket bounds in seconds: 1 ms .. 10 s. */
export const LATENCY_BUCKETS = [
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

/** A Prometheus histogram with fixed buckets. */
export class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[] = LATENCY_BUCKETS) {
    this.counts = new Array(bounds.length).fill(0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.bounds.length; i++) {
      if (v <= this.bounds[i]) {
        this.counts[i]++;
        return;
      }
    }
  }
}

type Labels = Record<string, string>;

/** Escapes a label value: backslash, double quote and newline. */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labelText(l: Labels): string {
  const keys = Object.keys(l);
  if (keys.length === 0) return "";
  return `{${keys.map((k) => `${k}="${escapeLabel(l[k])}"`).join(",")}}`;
}

function fmt(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** A labelled counter family. */
class Family<T> {
  readonly #series = new Map<string, { labels: Labels; value: T }>();
  constructor(readonly make: () => T) {}
  get(labels: Labels): T {
    let key = "";
    for (const k in labels) key += labels[k] + "\0";
    let s = this.#series.get(key);
    if (!s) {
      s = { labels, value: this.make() };
      this.#series.set(key, s);
    }
    return s.value;
  }
  entries(): { labels: Labels; value: T }[] {
    return [...this.#series.values()];
  }
}

/** Pending WHATSAT commands on one connection, to time command → reply. */
interface ConnTrack {
  /** Arrival time of each command still waiting for its reply, or -1 for a non-WHATSAT. */
  pending: number[];
}

const MAX_TRACKED_CONNS = 10_000;
const MAX_PENDING = 1_000;

/** Bus subscriber that accumulates the herd's metrics. */
export class HerdMetrics {
  readonly #accepted = new Family(() => ({ n: 0 }));
  readonly #dropped = new Family(() => ({ n: 0 }));
  readonly #propagated = new Family(() => ({ n: 0 }));
  readonly #received = new Family(() => ({ n: 0 }));
  readonly #linkChanges = new Family(() => ({ n: 0 }));
  readonly #connTotal = new Family(() => ({ n: 0 }));
  readonly #refused = new Family(() => ({ n: 0 }));
  readonly #peerRejected = new Family(() => ({ n: 0 }));
  readonly #receiptsLate = new Family(() => ({ n: 0 }));
  readonly #errors = new Family(() => ({ n: 0 }));
  readonly #places = new Family(() => ({ n: 0 }));
  readonly #whatsat = new Family(() => new Histogram());
  readonly #placesLatency = new Family(() => new Histogram());
  readonly #conns = new Map<string, ConnTrack>();
  readonly #off: () => void;

  constructor(bus: EventBus) {
    this.#off = bus.subscribe((e) => this.observe(e));
  }

  /** Stops listening. */
  close(): void {
    this.#off();
  }

  /** Accounts for one event (the bus calls this; tests may too). */
  observe(e: HerdEvent): void {
    const server = e.server;
    switch (e.kind) {
      case "location.accepted":
        this.#accepted.get({ server, from: e.from ?? "client" }).n++;
        break;
      case "location.dropped":
        this.#dropped.get({ server, from: e.from ?? "client", reason: e.reason }).n++;
        break;
      case "propagation.sent":
        this.#propagated.get({ server, peer: e.to }).n += e.records.length;
        break;
      case "propagation.received":
        this.#received.get({ server, peer: e.from }).n += e.records.length;
        break;
      case "link.up":
        this.#linkChanges.get({ server, peer: e.peer, state: "up" }).n++;
        break;
      case "link.down":
        this.#linkChanges.get({ server, peer: e.peer, state: "down" }).n++;
        break;
      case "client.connect":
        this.#connTotal.get({ server }).n++;
        break;
      case "client.refused":
        this.#refused.get({ server }).n++;
        break;
      case "peer.rejected":
        this.#peerRejected.get({ server }).n++;
        break;
      case "receipt.late":
        for (const peer of e.peers) this.#receiptsLate.get({ server, peer }).n++;
        break;
      case "error":
        this.#errors.get({ server, reason: e.reason }).n++;
        break;
      case "whatsat":
        this.#places.get({ server, provider: e.provider, status: e.status }).n++;
        this.#placesLatency.get({ server, provider: e.provider }).observe(e.latencyMs / 1000);
        break;
      case "line.in":
        this.#lineIn(server, e.conn, e.line, e.t);
        break;
      case "reply.out":
        this.#replyOut(server, e.conn, e.t);
        break;
      case "client.disconnect":
        this.#conns.delete(`${server}\0${e.conn}`);
        break;
      case "server.down":
        for (const k of this.#conns.keys()) if (k.startsWith(`${server}\0`)) this.#conns.delete(k);
        break;
    }
  }

  #lineIn(server: string, conn: number, line: string, t: number): void {
    // Blank lines get no reply, so they are not waiting for one.
    if (!/[^\s]/.test(line)) return;
    const key = `${server}\0${conn}`;
    let track = this.#conns.get(key);
    if (!track) {
      if (this.#conns.size >= MAX_TRACKED_CONNS) return;
      track = { pending: [] };
      this.#conns.set(key, track);
    }
    if (track.pending.length >= MAX_PENDING) return;
    track.pending.push(/^\s*WHATSAT\s/.test(line) ? t : -1);
  }

  #replyOut(server: string, conn: number, t: number): void {
    const track = this.#conns.get(`${server}\0${conn}`);
    if (!track || track.pending.length === 0) return;
    const started = track.pending.shift()!;
    if (started >= 0) this.#whatsat.get({ server }).observe(Math.max(0, t - started) / 1000);
  }

  /** The exposition text: counters from events, gauges from `snap`, hub stats if given. */
  render(snap: HerdSnapshot, hub?: HubStats): string {
    const out: string[] = [];
    const counter = (name: string, help: string, fam: Family<{ n: number }>) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
      for (const { labels, value } of fam.entries()) {
        out.push(`${name}${labelText(labels)} ${fmt(value.n)}`);
      }
    };
    const gauge = (name: string, help: string, rows: [Labels, number][]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
      for (const [labels, v] of rows) out.push(`${name}${labelText(labels)} ${fmt(v)}`);
    };
    const histogram = (name: string, help: string, fam: Family<Histogram>) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
      for (const { labels, value } of fam.entries()) {
        let cum = 0;
        value.bounds.forEach((b, i) => {
          cum += value.counts[i];
          out.push(`${name}_bucket${labelText({ ...labels, le: fmt(b) })} ${cum}`);
        });
        out.push(`${name}_bucket${labelText({ ...labels, le: "+Inf" })} ${value.count}`);
        out.push(`${name}_sum${labelText(labels)} ${fmt(value.sum)}`);
        out.push(`${name}_count${labelText(labels)} ${value.count}`);
      }
    };

    counter(
      "herd_updates_accepted_total",
      "Location updates stored, by server and where they came from (a peer, or client).",
      this.#accepted,
    );
    counter(
      "herd_updates_dropped_total",
      "Location updates not stored, by server, where they came from, and reason.",
      this.#dropped,
    );
    counter(
      "herd_updates_propagated_total",
      "Records sent to a neighbour, per link (server -> peer).",
      this.#propagated,
    );
    counter(
      "herd_updates_received_total",
      "Records received from a neighbour, per link (server <- peer).",
      this.#received,
    );
    counter(
      "herd_link_transitions_total",
      "Link state changes seen by server, per peer and new state.",
      this.#linkChanges,
    );
    counter("herd_client_connections_total", "Client connections accepted.", this.#connTotal);
    counter("herd_client_refused_total", "Client connections refused.", this.#refused);
    counter("herd_peer_rejected_total", "Peer connections rejected.", this.#peerRejected);
    counter(
      "herd_receipts_late_total",
      "New records answered or receipted without a neighbour's receipt in time.",
      this.#receiptsLate,
    );
    counter("herd_errors_total", "Error events, by server and reason.", this.#errors);
    counter(
      "herd_places_requests_total",
      "Places queries answered, by server, provider and status.",
      this.#places,
    );
    histogram(
      "herd_whatsat_duration_seconds",
      "WHATSAT command to reply, per server.",
      this.#whatsat,
    );
    histogram(
      "herd_places_duration_seconds",
      "Places provider latency, per server and provider.",
      this.#placesLatency,
    );

    gauge(
      "herd_server_running",
      "1 when the server is listening.",
      snap.servers.map((s) => [{ server: s.name }, s.running ? 1 : 0]),
    );
    gauge(
      "herd_connections",
      "Open client connections.",
      snap.servers.map((s) => [{ server: s.name }, s.connections]),
    );
    gauge(
      "herd_records",
      "Location records stored.",
      snap.servers.map((s) => [{ server: s.name }, s.records]),
    );
    gauge(
      "herd_link_up",
      "1 when the link from server to peer is up.",
      snap.servers.flatMap((s) =>
        s.links.map((l): [Labels, number] => [{ server: s.name, peer: l.peer }, l.up ? 1 : 0])
      ),
    );
    gauge("herd_places_provider_info", "The Places provider in use.", [[
      { provider: snap.places },
      1,
    ]]);
    if (hub) {
      gauge("herd_dashboard_subscribers", "Open dashboard event streams.", [[
        {},
        hub.subscribers,
      ]]);
      out.push(
        "# HELP herd_dashboard_events_total Events taken into the dashboard's ring.",
        "# TYPE herd_dashboard_events_total counter",
        `herd_dashboard_events_total ${hub.eventsIn}`,
        "# HELP herd_dashboard_frames_total Event-stream frames written.",
        "# TYPE herd_dashboard_frames_total counter",
        `herd_dashboard_frames_total ${hub.frames}`,
        "# HELP herd_dashboard_gaps_total Gap notices sent to subscribers that fell behind.",
        "# TYPE herd_dashboard_gaps_total counter",
        `herd_dashboard_gaps_total ${hub.gaps}`,
        "# HELP herd_dashboard_cut_total Subscribers cut loose for not reading.",
        "# TYPE herd_dashboard_cut_total counter",
        `herd_dashboard_cut_total ${hub.cut}`,
      );
    }
    return out.join("\n") + "\n";
  }
}
