/**
 * Types shared by the dashboard's server side (web/, routes/) and its browser side (islands/).
 * Nothing here touches Deno or the DOM, so islands can import it (types only).
 *
 * `HerdSnapshot` is the core's (`servers/snapshot.ts`); anything with the `HerdView` shape (the
 * in-process `Herd`, `RemoteHerd`, a test fake) can drive the dashboard.
 *
 * @module
 */

import type {
  EventBus,
  HerdEvent,
  PropagationReceivedEvent,
  PropagationSentEvent,
} from "../servers/events.ts";
import type { AtFields } from "../servers/record.ts";

/** One server as the dashboard sees it (the core's `ServerState`). */
export type { ServerState as ServerSnapshot } from "../servers/snapshot.ts";
/** Records and snapshots: the core's own shapes, so the two can never drift apart. */
export type { HerdSnapshot, RecordSnapshot } from "../servers/snapshot.ts";
import type { HerdSnapshot } from "../servers/snapshot.ts";
import type { LinkChange, LinkSettings } from "../servers/link_control.ts";

/** What the dashboard needs from a herd: events, a snapshot, and (in-process only) control. */
export interface HerdView {
  readonly bus: EventBus;
  /** `limit` bounds the records carried (0: servers only); a view may carry fewer. */
  snapshot(limit?: number): HerdSnapshot;
  /**
   * Every record every server holds (in-process only): seeds the client index, so totals are
   * exact for a dashboard started beside a herd that already holds clients.
   */
  allRecords?(): Iterator<AtFields>;
  /** The record each server holds for a client now (in-process only). */
  holdings?(client: string): { server: string; running: boolean; record: AtFields | null }[];
  /** Absent when the herd is remote. */
  startServer?(name: string): Promise<void>;
  /** Absent when the herd is remote. */
  stopServer?(name: string): Promise<void>;
  /**
   * Cuts, restores or delays a link (servers/link_control.ts); throws `NoSuchLinkError` for a
   * pair that is not a link. Absent when the herd is remote.
   */
  setLink?(a: string, b: string, change: LinkChange): Record<string, LinkSettings>;
}

/** A propagation event as shown: a count and the first few clients instead of every record. */
type Summarised<E> = Omit<E, "records"> & {
  count: number;
  /** Batches added up into this one (a busy tick's frame: dashboard/coalesce.ts); absent: 1. */
  batches?: number;
  /** Up to {@linkcode SUMMARY_CLIENTS} client names (display text). */
  clients: string[];
};

/** How many client names a propagation summary keeps. */
export const SUMMARY_CLIENTS = 5;

type Displayed<E> = E extends PropagationSentEvent | PropagationReceivedEvent ? Summarised<E> : E;

/**
 * An event as the dashboard sends it to browsers: every text field converted to display text,
 * propagation batches summarised, and a hub-assigned `id` (strictly increasing).
 */
export type DashEvent = Displayed<HerdEvent> & { id: number };

/**
 * The kinds the event stream carries (line.in / reply.out / command are too chatty and never
 * sent).
 */
export const STREAM_KINDS = [
  "server.up",
  "server.down",
  "client.connect",
  "client.disconnect",
  "client.refused",
  "location.accepted",
  "location.dropped",
  "propagation.sent",
  "propagation.received",
  "link.up",
  "link.down",
  "link.control",
  "sync.done",
  "peer.rejected",
  "whatsat",
  "receipt.late",
  "invalid",
  "error",
] as const;

/** The data the page embeds for its islands (JSON in a script tag). */
export interface InitialData {
  snapshot: HerdSnapshot;
  /** Newest events (display form), oldest first, for the feed and the Places log. */
  events: DashEvent[];
  /** Newest WHATSAT events, oldest first. */
  whatsats: DashEvent[];
  /** The id of the newest event the hub had when the page was made (resume point for SSE). */
  lastId: number;
  /** Identifies this dashboard process; a changed boot id means the hub was restarted. */
  boot: string;
  /** True when servers can be stopped and started from here (in-process herd). */
  canControl: boolean;
  /** True when links can be cut and delayed from here (in-process herd). */
  canControlLinks: boolean;
  /** True when control requests need a token (the dashboard listens beyond loopback). */
  tokenRequired: boolean;
  /** Distinct clients across the herd, and the map's first (whole-world) clusters. */
  clients: ClusterResult;
  /** Per-server history for the sparklines. */
  series: SeriesData;
}

/** One group of clients on the map (map units of the 960×500 projection). */
export interface Cluster {
  x: number;
  y: number;
  /** Clients in the group. */
  n: number;
  /** A group's extent `[x0, y0, x1, y1]` (its clients' box), for zooming to fit it. */
  ext?: [number, number, number, number];
  /** The client's id (display text) when the group is one client. */
  client?: string;
  /** That client's record (display text). */
  rec?: { origin: string; diff: string; location: string; time: string };
}

/** `GET /api/clusters`: the herd's clients grouped on a grid for one zoom level and view. */
export interface ClusterResult {
  /** Distinct clients across the herd (exact for an in-process herd). */
  total: number;
  /** False when the total is a lower bound (a remote herd: only what the observers showed). */
  exact: boolean;
  /** Clients inside the requested view. */
  inView: number;
  /** Zoom level (the grid cell is `cell` map units: 32 / 2^z). */
  z: number;
  cell: number;
  clusters: Cluster[];
  /** Set when clients changed since these were counted (a busy herd): ask again soon. */
  stale?: boolean;
}

/** A client as the search and the table list it (display text). */
export interface ClientRow {
  client: string;
  origin: string;
  time: string;
  location: string;
  lat: number;
  lng: number;
}

/** `GET /api/clients?prefix=`: the first matches in ID order, and how many match in all. */
export interface SearchResult {
  prefix: string;
  total: number;
  clients: ClientRow[];
}

/** One server's copy of a client's record, for the client panel. */
export interface Holding {
  server: string;
  running: boolean;
  /** The record it holds (display text), null when none. */
  record: ClientRow & { diff: string } | null;
  /** "current": the newest; "behind": an older record; "missing": none; "unknown": not known here. */
  state: "current" | "behind" | "missing" | "unknown";
}

/** One step of a record's propagation: `server` stored it, from `from` (null: from the client). */
export interface Hop {
  server: string;
  from: string | null;
  t: number;
  catchUp: boolean;
}

/** One past position of a client (oldest first in a trail). */
export interface TrailPoint {
  lat: number;
  lng: number;
  time: string;
  t: number;
}

/** `GET /api/client?id=`: everything the client panel shows. */
export interface ClientDetail {
  newest: ClientRow & { diff: string };
  holdings: Holding[];
  /** How the newest record spread, in the order the dashboard saw it (empty when not seen). */
  path: Hop[];
  trail: TrailPoint[];
}

/** Per-server history: one point a second, oldest first, the newest at `t`. */
export interface SeriesData {
  /** Milliseconds between points. */
  step: number;
  /** Time of the newest point. */
  t: number;
  servers: Record<string, { upd: number[]; conns: number[] }>;
}

/** The live `series` message: the newest point of every server, [updates, connections]. */
export interface SeriesTick {
  t: number;
  points: Record<string, [number, number]>;
}

/** A gap notice: events `from`..`to` (inclusive) are gone from the ring and were not sent. */
export interface GapNotice {
  from: number;
  to: number;
}

/**
 * `event: merged`: in a busy tick, `merged` of the events `from..to` were folded into others
 * (each client's best location, one propagation summary per link: dashboard/coalesce.ts); the
 * frame after it carries the rest. Nothing the page's counts depend on is merged.
 */
export interface MergedNotice {
  from: number;
  to: number;
  merged: number;
}

/** The `hello` message an SSE stream starts with. */
export interface HelloNotice {
  boot: string;
  /** The newest id at connect time. */
  lastId: number;
  /** The id the stream resumes after (from `Last-Event-ID`), or null for a fresh stream. */
  resumeFrom: number | null;
}
