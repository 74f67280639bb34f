/**
 * Observers: an authenticated read-only stream of one server's events, so a dashboard can watch
 * a herd of separate `deno task server` processes (`deno task dashboard --config FILE`).
 *
 * Handshake (on the server's client port, or its TLS link port): the link handshake of
 * `handshake.ts` with the role `observer`, ending in `HERD2 WATCHING <server>`; then (lines
 * formatted by `wire.ts`)
 * `STATE <json>` (its part of the snapshot),
 * then `RECORDS <json>` lines (the snapshot's records, in chunks), then one `EVENT <json>` line
 * per event, but one `location.batch` for the records a catch-up read stored (see
 * docs/protocol.md). The JSON is pure ASCII (`\u00XX` escapes), and its text fields are binary
 * strings, as on the wire. Every line is within `MAX_OBSERVER_LINE` (limits.ts).
 * A slow observer is cut loose once 4 MiB wait for it; it reconnects and gets a fresh STATE.
 *
 * @module
 */

import type { EventBus, HerdEvent, LocationBatchEvent } from "./events.ts";
import type { ServerState } from "./snapshot.ts";
import type { StoredRecord } from "./store.ts";
import { binaryToBytes } from "./lines.ts";
import {
  formatEvent,
  formatMetrics,
  formatRecords,
  formatState,
  formatWelcome,
  recordJson,
} from "./wire.ts";
import { closeQuietly, writeAll } from "./io.ts";
import { OBSERVER_CHUNK } from "./limits.ts";

const MAX_BUFFERED = 4 * 1024 * 1024;
/** How often an observer gets the server's metrics (`METRICS <json>`), besides at the start. */
export const METRICS_EVERY_MS = 5000;
/**
 * Observer streams one server keeps at once; a new one beyond takes the place of the oldest. Each
 * may hold MAX_BUFFERED bytes of events for a reader that stopped: without a bound, a member
 * opening observers it never reads grew the server's heap by 4 MiB each (a dashboard needs one).
 */
export const MAX_OBSERVERS = 16;
/** Records sent in the snapshot (the most recently changed). */
export const STATE_RECORDS = 2000;

/** What an observer stream needs from its server. */
export interface Observable {
  readonly name: string;
  readonly bus: EventBus;
  /** The Places provider's name ("offline", "new", "legacy"). */
  readonly places: string;
  state(): ServerState;
  /** Its records (location events carry the count: a remote view of it stays exact). */
  readonly store: { readonly size: number };
  recentRecords(limit: number): StoredRecord[];
  /** The server's metrics as JSON, when its process keeps them. */
  metricsExport?: () => Promise<unknown>;
}

/**
 * The observer form of an event: a batch (propagation sent or received) carries its size and
 * the client IDs of its first few records only, so every EVENT line stays within
 * `MAX_OBSERVER_LINE` whatever the batch holds (a catch-up batch can hold 2,048 records of
 * 64 KiB). `remote_herd.ts` restores the record count.
 */
function observedEvent(e: HerdEvent, held: number): unknown {
  if (e.kind === "location.accepted") return { ...e, held };
  if (e.kind !== "propagation.sent" && e.kind !== "propagation.received") return e;
  const { records, ...rest } = e;
  const named = records.slice(0, BATCH_CLIENTS).map((r) => ({ client: r.client }));
  return { ...rest, records: named, count: records.length };
}

/** Client IDs an observed batch event names (the dashboard shows five), records a `location.batch` carries. */
const BATCH_CLIENTS = 8;

/**
 * Streams a server's events to an authenticated observer until either side closes.
 *
 * The snapshot is streamed, not built whole: `STATE` (without records, but with how many
 * follow), then `RECORDS <json array>` lines of about `OBSERVER_CHUNK` bytes each, oldest change
 * first, each built only when the previous one has been written; then `EVENT` lines. Events
 * that happen meanwhile wait in the bounded buffer.
 *
 * `onClose` is never called before this function has returned (the caller may still be
 * registering the stream), and only once.
 *
 * @example
 * ```ts
 * declare const server: Observable; // a HerdServer
 * declare const conn: Deno.Conn; // past the observer handshake
 *
 * const stream = startObserver(server, conn, "dashboard", () => {});
 * stream.close();
 * ```
 */
export function startObserver(
  server: Observable,
  conn: Deno.Conn,
  observer: string,
  onClose: () => void,
): { close(why?: string): void } {
  let pending: string[] = [];
  let bytes = 0;
  let writing = false;
  let closed = false;
  // Taken now, so the snapshot is of this moment; records are shared, not copied.
  let snapshot: StoredRecord[] | undefined = server.recentRecords(STATE_RECORDS).reverse();
  let next = 0;

  const close = (why?: string) => {
    if (closed) return;
    closed = true;
    off();
    clearInterval(metricsTimer);
    closeQuietly(conn);
    if (why !== undefined) {
      server.bus.emit({
        kind: "error",
        t: Date.now(),
        server: server.name,
        reason: "observer",
        message: `observer ${observer}: ${why}`,
      });
    }
    queueMicrotask(onClose);
  };

  /** The next snapshot chunk, or undefined when the snapshot is done. */
  const chunk = (): string | undefined => {
    if (snapshot === undefined || next >= snapshot.length) {
      snapshot = undefined;
      return undefined;
    }
    const parts: string[] = [];
    let size = 0;
    while (next < snapshot.length && size < OBSERVER_CHUNK) {
      const r = snapshot[next++];
      const json = recordJson(r);
      parts.push(json);
      size += json.length + 1;
    }
    return formatRecords(parts);
  };

  // Written first, by the first pump; then the snapshot chunks, then the buffered events.
  // The handshake's last line (`HERD2 WATCHING`) leads, so it and STATE share a write.
  let header: string | undefined = formatWelcome("observer", server.name, observer) +
    formatState({
      server: server.state(),
      records: [],
      snapshot: snapshot.length,
      observer,
      places: server.places,
    });

  const pump = async () => {
    if (writing || closed) return;
    writing = true;
    try {
      for (;;) {
        if (closed) break;
        let text = header ?? chunk();
        header = undefined;
        if (text === undefined) {
          if (pending.length === 0) break;
          text = pending.join("");
          pending = [];
          bytes = 0;
        }
        await writeAll(conn, binaryToBytes(text));
      }
    } catch {
      close();
    }
    writing = false;
  };

  const send = (line: string) => {
    if (closed) return;
    pending.push(line);
    bytes += line.length;
    if (bytes > MAX_BUFFERED) {
      close(`cut loose: over ${MAX_BUFFERED} bytes waiting`);
      return;
    }
    if (!writing) queueMicrotask(pump);
  };

  // The records a catch-up read stored, gathered into one `location.batch` (flushed after the
  // read's handling, or before any other event so the order holds): a restart's million records
  // cost the observer a line per read, not a JSON line each.
  let batch: LocationBatchEvent | undefined;
  /** The batch's named records' JSON at worst (`\u00XX` per byte): bounded by a chunk. */
  let sampled = 0;
  const flushBatch = () => {
    if (batch === undefined) return;
    batch.held = server.store.size;
    send(formatEvent(batch));
    batch = undefined;
  };

  const off = server.bus.subscribe((e: HerdEvent) => {
    if (
      e.server !== server.name || e.kind === "line.in" || e.kind === "reply.out" ||
      e.kind === "command" || e.kind === "persist.commit"
    ) return;
    if (e.kind === "location.accepted" && e.catchUp === true && e.from !== null) {
      if (batch !== undefined && batch.from !== e.from) flushBatch();
      if (batch === undefined) {
        const { t, from } = e;
        batch = {
          kind: "location.batch",
          t,
          server: server.name,
          from,
          count: 0,
          records: [],
          held: 0,
        };
        sampled = 0;
        queueMicrotask(flushBatch);
      }
      batch.t = e.t;
      batch.count++;
      // The line stays within MAX_OBSERVER_LINE: a chunk plus the record that crossed it.
      if (batch.records.length < BATCH_CLIENTS && sampled < OBSERVER_CHUNK) {
        const { client, origin, diff, location, time } = e.record;
        batch.records.push({ client, origin, diff, location, time, lat: e.lat, lng: e.lng });
        sampled += 6 *
          (client.length + origin.length + diff.length + location.length + time.length);
      }
      return;
    }
    flushBatch();
    send(formatEvent(observedEvent(e, server.store.size)));
  });
  // Not now: the caller has not registered this stream yet.
  queueMicrotask(pump);

  // The server's own counters, so a dashboard that connects late (or reconnects) shows them.
  const sendMetrics = () => {
    server.metricsExport?.().then(
      (json) => send(formatMetrics(json)),
      () => {},
    );
  };
  sendMetrics();
  const metricsTimer = setInterval(sendMetrics, METRICS_EVERY_MS);

  // Observers only listen: what one sends is read and dropped (so it can never fill a buffer
  // of ours); its EOF, or a reset, ends the stream.
  (async () => {
    const buf = new Uint8Array(256);
    try {
      while (!closed && (await conn.read(buf)) !== null) {
        // observers only listen
      }
    } catch {
      // reset by peer
    }
    close();
  })();

  return { close };
}
