/**
 * What the dashboard remembers about recently active clients, from the herd's events: a short
 * trail of each one's positions, and the propagation path of its newest record (which server
 * stored it, from which, and when). The herd keeps only the newest record; this history is the
 * dashboard's own, and bounded: at most `clients` clients and `bytes` of their newest records
 * (least recently updated dropped first), `trail` positions and `hops` steps each.
 *
 * @module
 */

import {
  batchAccepted,
  displayClip,
  type EventBus,
  type LocationAcceptedEvent,
} from "../servers/events.ts";
import { type AtFields, compareRecords } from "../servers/record.ts";
import type { Hop, TrailPoint } from "./types.ts";

/** Bounds of the history. */
export interface TrailOptions {
  /** Clients remembered. Default 10 000. */
  clients?: number;
  /** Positions per client. Default 12. */
  trail?: number;
  /** Propagation steps per record. Default 64. */
  hops?: number;
  /**
   * Text of the newest records kept (bytes). Default 64 MiB. A remote view's records are copies
   * from its streams, up to 64 KiB each: 10,000 of them were 640 MB, bounded by nothing else
   * (adv15).
   */
  bytes?: number;
}

/** A record's text, as the byte bound counts it. */
function textBytes(r: AtFields): number {
  return r.client.length + r.origin.length + r.diff.length + r.location.length + r.time.length;
}

interface Track {
  /** The newest record seen. */
  newest: AtFields;
  /** Past positions, oldest first (the newest record's is last). */
  trail: TrailPoint[];
  /** How `newest` spread, in the order the events came. */
  hops: Hop[];
}

/** Per-client trails and propagation paths. See the module doc. */
export class ClientTrails {
  readonly #tracks = new Map<string, Track>();
  readonly #clients: number;
  readonly #trail: number;
  readonly #hops: number;
  readonly #maxBytes: number;
  #bytes = 0;
  readonly #off: () => void;

  constructor(bus: EventBus, opts: TrailOptions = {}) {
    this.#clients = Math.max(1, opts.clients ?? 10_000);
    this.#trail = Math.max(1, opts.trail ?? 12);
    this.#hops = Math.max(1, opts.hops ?? 64);
    this.#maxBytes = opts.bytes ?? 64 * 1024 * 1024;
    this.#off = bus.subscribe((e) => {
      if (e.kind === "location.accepted") this.#accepted(e);
      else if (e.kind === "location.batch") { for (const a of batchAccepted(e)) this.#accepted(a); }
    });
  }

  /** Clients remembered now. */
  get size(): number {
    return this.#tracks.size;
  }

  #accepted(e: LocationAcceptedEvent): void {
    const r = e.record;
    const hop: Hop = { server: e.server, from: e.from, t: e.t, catchUp: e.catchUp === true };
    const track = this.#tracks.get(r.client);
    if (track === undefined) {
      this.#tracks.set(r.client, {
        newest: r,
        // What a page shows of the time (a client may send 64 KiB of digits; review11 #4).
        trail: [{ lat: e.lat, lng: e.lng, time: displayClip(r.time), t: e.t }],
        hops: [hop],
      });
      this.#bytes += textBytes(r);
      this.#trim();
      return;
    }
    const order = compareRecords(r, track.newest);
    if (order < 0) return; // an older record stored late somewhere: not the newest's path
    if (order === 0) {
      if (track.hops.length < this.#hops) track.hops.push(hop);
      return;
    }
    this.#bytes += textBytes(r) - textBytes(track.newest);
    track.newest = r;
    track.hops = [hop];
    track.trail.push({ lat: e.lat, lng: e.lng, time: displayClip(r.time), t: e.t });
    if (track.trail.length > this.#trail) track.trail.shift();
    // Re-insert: most recently updated last.
    this.#tracks.delete(r.client);
    this.#tracks.set(r.client, track);
    this.#trim();
  }

  /** Drops the least recently updated clients past either bound (the newest stays). */
  #trim(): void {
    while (
      this.#tracks.size > 1 &&
      (this.#tracks.size > this.#clients || this.#bytes > this.#maxBytes)
    ) {
      // A Map iterates in insertion order: the first entry is the least recently updated.
      const [client, oldest] = this.#tracks.entries().next().value!;
      this.#tracks.delete(client);
      this.#bytes -= textBytes(oldest.newest);
    }
  }

  /** The client's history (binary-string ID), if remembered. */
  get(client: string): { newest: AtFields; trail: TrailPoint[]; hops: Hop[] } | undefined {
    const t = this.#tracks.get(client);
    return t && { newest: t.newest, trail: [...t.trail], hops: [...t.hops] };
  }

  /** Leaves the bus. */
  close(): void {
    this.#off();
  }
}
