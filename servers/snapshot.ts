/**
 * Snapshot shapes: a server's state and a herd's, as the dashboard, observers and tools see
 * them. Types only, so the modules that produce them (server.ts, herd.ts), carry them
 * (observe.ts, wire.ts) and show them (dashboard/) depend on this file, never on each other.
 *
 * @module
 */

import type { LinkStats } from "./events.ts";

/** A snapshot of one server, for the dashboard and tools. */
export interface ServerState {
  name: string;
  host: string;
  port: number;
  running: boolean;
  connections: number;
  records: number;
  neighbors: string[];
  /**
   * Each link: `up`, and its statistics (state, round trip, records behind, last change; absent
   * from the state of a server older than them, seen by a remote dashboard); `cut` and `delayMs`
   * appear when set at run time (servers/link_control.ts).
   */
  links: (
    & { peer: string; up: boolean; cut?: boolean; delayMs?: number }
    & Partial<
      Omit<LinkStats, "peer">
    >
  )[];
  /**
   * The flood (docs/protocol.md, "The flood's trees"): whether this server sends records along
   * the trees now, and how many records it numbered again at turns to the full flood since it
   * started. Absent from servers older than the trees, and with --full-flood.
   */
  flood?: { trees: boolean; floodedAgain: number };
}

/** One stored location record as a snapshot shows it (text fields are binary strings). */
export interface RecordSnapshot {
  client: string;
  origin: string;
  diff: string;
  location: string;
  time: string;
  lat: number;
  lng: number;
}

/** A herd's state for the dashboard: servers, newest records, and the Places provider. */
export interface HerdSnapshot {
  servers: ServerState[];
  /** Newest records across the herd (at most a few thousand), for the map. */
  records: RecordSnapshot[];
  /** Places provider in use: "offline" | "new" | "legacy". */
  places: string;
}
