/**
 * A busy tick's frame, coalesced: what a browser can use of thousands of events a second.
 *
 * A herd under load emits tens of thousands of events a second (every IAMAT is a
 * `location.accepted` at each server it floods to, plus propagation batches). Sent as they come,
 * a hundred open dashboards cost the herd tens of megabytes a second of JSON and socket writes,
 * and no person reads them. So when a tick has more events than a page can show, the frame keeps
 * per client only the location event with its best record (the herd's own order: what the map
 * shows), per link and direction one propagation summary (counts added up, `batches` says how
 * many), and every other event as it is; the stream says how many events were merged
 * (`event: merged`). Counts the page keeps from events (connections, links, servers) are never
 * merged. When even that is more than a frame holds, the oldest are skipped with a gap notice
 * (the page refetches the state).
 *
 * @module
 */

import type { HerdEvent } from "../servers/events.ts";
import { type AtFields, compareRecords } from "../servers/record.ts";
import { type DashEvent, SUMMARY_CLIENTS } from "./types.ts";

/** One event in the hub's ring: the bus event, or its display form once converted. */
export interface Entry {
  id: number;
  /** The bus event, converted on first use (propagation batches are summarised at once). */
  raw?: HerdEvent;
  ev?: DashEvent;
  /** The display form's JSON, made once for every frame and subscriber. */
  json?: string;
}

/** A coalesced frame's content. */
export interface Coalesced {
  /** JSON of the events sent, oldest first. */
  parts: string[];
  /** Events folded into another one (not sent on their own). */
  merged: number;
  /** Events `from+1..skippedTo` did not fit in the frame (0: none). */
  skippedTo: number;
}

type Propagation = Extract<DashEvent, { kind: "propagation.sent" | "propagation.received" }>;

/** A client's location slot, and the servers whose newest event for it was seen. */
interface Client {
  slot: number;
  servers: string[];
}

interface Slot {
  entry: Entry;
  /** A propagation summary with later batches added (a copy: the ring's event is shared). */
  sum?: Propagation & { batches: number };
}

function recordOf(e: Entry): AtFields {
  return ((e.ev ?? e.raw) as { record: AtFields }).record;
}

/**
 * Coalesces events `lowest..to` (newest first, so the newest survive a full frame), at most
 * `maxFrame` of them sent. `look` finds an id's entry, `dash` converts one to display form.
 */
export function coalesce(
  lowest: number,
  to: number,
  maxFrame: number,
  look: (id: number) => Entry | undefined,
  dash: (e: Entry) => DashEvent,
): Coalesced {
  const slots: Slot[] = [];
  const accepted = new Map<string, Client>();
  const dropped = new Map<string, Client>();
  const links = new Map<string, number>();
  let merged = 0;
  let skippedTo = 0;
  for (let id = to; id >= lowest; id--) {
    const e = look(id);
    if (!e) continue;
    const ev = e.ev ?? e.raw!;
    if (ev.kind === "location.accepted" || ev.kind === "location.dropped") {
      const byClient = ev.kind === "location.accepted" ? accepted : dropped;
      const c = byClient.get(ev.record.client);
      if (c !== undefined) {
        merged++;
        // Newest first, so an older event wins only with a better record: one from a server
        // that took the newer record first, while another was still taking the one before. A
        // server takes only records better than the one it holds, so only the newest event of
        // each server needs comparing.
        if (ev.kind === "location.accepted" && !c.servers.includes(ev.server)) {
          c.servers.push(ev.server);
          if (compareRecords(ev.record, recordOf(slots[c.slot].entry)) > 0) {
            slots[c.slot] = { entry: e };
          }
        }
        continue;
      }
      if (slots.length >= maxFrame) {
        skippedTo = id;
        break;
      }
      byClient.set(ev.record.client, { slot: slots.length, servers: [ev.server] });
    } else if (ev.kind === "propagation.sent" || ev.kind === "propagation.received") {
      const p = dash(e) as Propagation;
      const key = `${p.kind === "propagation.sent" ? `>${p.to}` : `<${p.from}`}\0${p.server}\0${
        p.catchUp ? 1 : 0
      }`;
      const i = links.get(key);
      if (i !== undefined) {
        merged++;
        const slot = slots[i];
        slot.sum ??= { ...(dash(slot.entry) as Propagation), batches: 1 };
        slot.sum.count += p.count;
        slot.sum.batches++;
        if (slot.sum.clients.length < SUMMARY_CLIENTS) {
          slot.sum.clients = [...slot.sum.clients, ...p.clients].slice(0, SUMMARY_CLIENTS);
        }
        continue;
      }
      if (slots.length >= maxFrame) {
        skippedTo = id;
        break;
      }
      links.set(key, slots.length);
    } else if (slots.length >= maxFrame) {
      skippedTo = id;
      break;
    }
    slots.push({ entry: e });
  }
  // A better record's event may be older than its neighbours: send in id order.
  slots.sort((a, b) => a.entry.id - b.entry.id);
  const parts = slots.map((s) =>
    s.sum ? JSON.stringify(s.sum) : (s.entry.json ??= JSON.stringify(dash(s.entry)))
  );
  return { parts, merged, skippedTo };
}
