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

/** One server as the dashboard sees it (the core's `ServerState`). */
export type { ServerState as ServerSnapshot } from "../servers/snapshot.ts";
/** Records and snapshots: the core's own shapes, so the two can never drift apart. */
export type { HerdSnapshot, RecordSnapshot } from "../servers/snapshot.ts";
import type { HerdSnapshot } from "../servers/snapshot.ts";

/** What the dashboard needs from a herd: events, a snapshot, and (in-process only) control. */
export interface HerdView {
  readonly bus: EventBus;
  snapshot(): HerdSnapshot;
  /** Absent when the herd is remote. */
  startServer?(name: string): Promise<void>;
  /** Absent when the herd is remote. */
  stopServer?(name: string): Promise<void>;
}

/** A propagation event as shown: a count and the first few clients instead of every record. */
type Summarised<E> = Omit<E, "records"> & {
  count: number;
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
  /** True when control requests need a token (the dashboard listens beyond loopback). */
  tokenRequired: boolean;
}

/** A gap notice: events `from`..`to` (inclusive) are gone from the ring and were not sent. */
export interface GapNotice {
  from: number;
  to: number;
}

/** The `hello` message an SSE stream starts with. */
export interface HelloNotice {
  boot: string;
  /** The newest id at connect time. */
  lastId: number;
  /** The id the stream resumes after (from `Last-Event-ID`), or null for a fresh stream. */
  resumeFrom: number | null;
}
