/**
 * Observers: an authenticated read-only stream of one server's events, so a dashboard can watch
 * a herd of separate `deno task server` processes (`deno task dashboard --config FILE`).
 *
 * Handshake (first line on the server's client port):
 * `HERD1 OBSERVE <observer> <unixMs> <nonce> <mac>` with
 * mac = hex HMAC-SHA256(secret, `OBSERVE|<observer>|<server>|<unixMs>|<nonce>`).
 * The server answers `HERD1 WATCHING <server>`, then `STATE <json>` (its part of the snapshot),
 * then one `EVENT <json>` line per event. The JSON is pure ASCII (`\u00XX` escapes), and its
 * text fields are binary strings, as on the wire.
 * A slow observer is cut loose once 4 MiB wait for it; it reconnects and gets a fresh STATE.
 *
 * @module
 */

import type { HerdAuth } from "./auth.ts";
import { asciiJson, type EventBus, type HerdEvent } from "./events.ts";
import type { ServerState } from "./server.ts";
import type { StoredRecord } from "./store.ts";
import { binaryToBytes } from "./lines.ts";
import { splitFields } from "./protocol.ts";
import { writeAll } from "./connection.ts";

const MAX_BUFFERED = 4 * 1024 * 1024;
/** Records sent in the STATE line, newest first. */
export const STATE_RECORDS = 2000;

/** What an observer stream needs from its server. */
export interface Observable {
  readonly name: string;
  readonly bus: EventBus;
  readonly auth: HerdAuth;
  /** The Places provider's name ("offline", "new", "legacy"). */
  readonly places: string;
  state(): ServerState;
  recentRecords(limit: number): StoredRecord[];
}

/**
 * Checks an OBSERVE handshake line.
 *
 * @example
 * ```ts
 * const v = await verifyObserve(auth, "Hill", line);
 * if (v.ok) console.log(`${v.observer} is watching`);
 * ```
 */
export async function verifyObserve(
  auth: HerdAuth,
  me: string,
  line: string,
): Promise<{ ok: true; observer: string } | { ok: false; reason: string }> {
  const f = splitFields(line);
  if (f.length !== 6 || f[0] !== "HERD1" || f[1] !== "OBSERVE") {
    return { ok: false, reason: "malformed observer handshake" };
  }
  const [, , observer, ms, nonce, mac] = f;
  const check = await auth.checkHandshake(
    `OBSERVE|${observer}|${me}|${ms}|${nonce}`,
    ms,
    nonce,
    mac,
  );
  if (check === "bad secret") {
    return { ok: false, reason: `bad herd secret from observer ${observer}` };
  }
  if (check !== "ok") {
    return { ok: false, reason: `stale or replayed observer handshake from ${observer}` };
  }
  return { ok: true, observer };
}

/**
 * Streams a server's events to an authenticated observer until either side closes.
 *
 * @example
 * ```ts
 * const stream = startObserver(server, conn, "dashboard", () => {});
 * stream.close();
 * ```
 */
export function startObserver(
  server: Observable,
  conn: Deno.Conn,
  observer: string,
  onClose: () => void,
): { close(): void } {
  let pending: string[] = [];
  let bytes = 0;
  let writing = false;
  let closed = false;

  const close = () => {
    if (closed) return;
    closed = true;
    off();
    try {
      conn.close();
    } catch {
      // already closed
    }
    onClose();
  };

  const pump = async () => {
    if (writing) return;
    writing = true;
    try {
      while (pending.length > 0 && !closed) {
        const text = pending.join("");
        pending = [];
        bytes = 0;
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
      close();
      return;
    }
    if (!writing) queueMicrotask(pump);
  };

  const off = server.bus.subscribe((e: HerdEvent) => {
    if (e.server !== server.name || e.kind === "line.in" || e.kind === "reply.out") return;
    send(`EVENT ${asciiJson(e)}\n`);
  });

  const records = server.recentRecords(STATE_RECORDS).map((r) => ({
    client: r.client,
    origin: r.origin,
    diff: r.diff,
    location: r.location,
    time: r.time,
  }));
  send(`HERD1 WATCHING ${server.name}\n`);
  send(
    `STATE ${asciiJson({ server: server.state(), records, observer, places: server.places })}\n`,
  );

  // Anything the observer sends (or its EOF) ends the stream.
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
