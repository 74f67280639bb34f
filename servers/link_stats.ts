/**
 * Link statistics: each link's state, round-trip time, records behind and last change, read by
 * /status, the metrics and the dashboard.
 *
 * The round trip is a `PING` answered by `PONG`. A server announces that it answers PINGs with an
 * empty line after its `SYNC`; older servers ignore empty lines and drop a link on a line they do
 * not know, so a server sends `PONG` only to a peer that announced it (docs/protocol.md).
 *
 * A reporter per server compares each link's stats once per heartbeat and emits a `link.stats`
 * event for a link whose stats changed: at most one per link per heartbeat interval.
 *
 * @module
 */

import type { EventBus, LinkStats } from "./events.ts";

export type { LinkState, LinkStats } from "./events.ts";

/** PINGs outstanding at most; older ones are forgotten (a peer that stopped answering). */
const MAX_PROBES = 8;

/**
 * The round trip of one link's PINGs: PONGs answer PINGs in order, so the oldest outstanding
 * PING is the one a PONG answers.
 *
 * @example
 * ```ts
 * const rtt = new RttProbe();
 * rtt.sent(100);
 * rtt.answered(103.5); // 3.5
 * ```
 */
export class RttProbe {
  #sent: number[] = [];
  /** The last measured round trip (ms), or null. */
  lastMs: number | null = null;

  /** A PING went out at `now` (performance.now()). */
  sent(now: number): void {
    if (this.#sent.length >= MAX_PROBES) this.#sent.shift();
    this.#sent.push(now);
  }

  /** A PONG came in at `now`: returns its round trip, or undefined when no PING was out. */
  answered(now: number): number | undefined {
    const at = this.#sent.shift();
    if (at === undefined) return undefined;
    this.lastMs = now - at;
    return this.lastMs;
  }

  /** PINGs not yet answered. */
  get outstanding(): number {
    return this.#sent.length;
  }

  /** A new connection: PINGs of the old one will never be answered on it. */
  reset(): void {
    this.#sent = [];
  }
}

/** What a reporter reads: a server's name, bus and links. */
export interface LinkStatsSource {
  readonly name: string;
  readonly bus: EventBus;
  linkStats(): LinkStats[];
}

/**
 * Emits `link.stats` for every link whose stats changed since the last report, once per
 * `intervalMs`.
 *
 * @example
 * ```ts
 * declare const server: LinkStatsSource; // a HerdServer
 * const reporter = new LinkStatsReporter(server, 1000);
 * reporter.start();
 * reporter.stop();
 * ```
 */
export class LinkStatsReporter {
  #source: LinkStatsSource;
  #intervalMs: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #last = new Map<string, string>();

  constructor(source: LinkStatsSource, intervalMs: number) {
    this.#source = source;
    this.#intervalMs = intervalMs;
  }

  /** Reports now, then every interval. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#last.clear();
    this.report();
    this.#timer = setInterval(() => this.report(), this.#intervalMs);
  }

  /** Stops reporting. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Emits an event for each link whose stats changed since the last report. */
  report(): void {
    const s = this.#source;
    const t = Date.now();
    for (const stats of s.linkStats()) {
      // RTT to 0.1 ms: a change below that is noise, not news.
      const rtt = stats.rttMs === null ? null : Math.round(stats.rttMs * 10) / 10;
      const key = `${stats.state} ${rtt} ${stats.behind} ${stats.unacked} ${stats.since}`;
      if (this.#last.get(stats.peer) === key) continue;
      this.#last.set(stats.peer, key);
      s.bus.emit({ kind: "link.stats", t, server: s.name, ...stats, rttMs: rtt });
    }
  }
}
