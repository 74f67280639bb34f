/**
 * Converting what the herd holds (binary strings: one char per byte) into what a page shows.
 *
 * @module
 */

import { displayClip } from "../servers/events.ts";
import type { HerdSnapshot, InitialData } from "./types.ts";
import type { Dashboard } from "./context.ts";

/** The snapshot with every wire text field as display text; `records: false` leaves them out. */
export function displaySnapshot(s: HerdSnapshot, records = true): HerdSnapshot {
  return {
    servers: s.servers.map((x) => ({
      name: x.name,
      host: x.host,
      port: x.port,
      running: x.running,
      connections: x.connections,
      records: x.records,
      neighbors: [...x.neighbors],
      // Whatever a link reports (up, and its statistics where the herd keeps them) is numbers
      // and server names: passed on as it is.
      links: x.links.map((l) => ({ ...l })),
    })),
    records: records
      ? s.records.map((r) => ({
        client: displayClip(r.client),
        origin: displayClip(r.origin),
        diff: displayClip(r.diff),
        location: displayClip(r.location),
        time: displayClip(r.time),
        lat: r.lat,
        lng: r.lng,
      }))
      : [],
    places: s.places,
  };
}

/** Newest records the page embeds (for the client table's "newest" list). */
export const PAGE_RECORDS = 100;

/** Everything the page embeds for its islands, taken at one instant. */
export function initialData(d: Dashboard): InitialData {
  // The page lists the newest clients only (the map asks for its clusters): a short list
  // keeps the page small at any herd size.
  const snapshot = displaySnapshot(d.herd.snapshot(PAGE_RECORDS));
  return {
    snapshot,
    events: d.hub.recent(200),
    whatsats: d.hub.recentWhatsats(100),
    lastId: d.hub.lastId,
    boot: d.hub.boot,
    canControl: typeof d.herd.stopServer === "function" && typeof d.herd.startServer === "function",
    canControlLinks: typeof d.herd.setLink === "function",
    tokenRequired: Boolean(d.guard.token),
    clients: d.clients.clusters(0),
    series: d.series.data(),
  };
}

/** JSON safe inside `<script type="application/json">`: no `<`, no line separators. */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, "\\u003c")
    .replace(/>/g, "\\u003e")
    .replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}
