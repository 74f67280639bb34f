/**
 * The bench's side of our herd's observer stream (servers/observe.ts): an authenticated,
 * read-only connection to one server that receives `STATE <json>` then `EVENT <json>` lines.
 *
 * - {@linkcode observerWatcher}: sees records arrive at a server (`location.accepted` events),
 *   for propagation latency.
 * - {@linkcode serverState}: one server's state (its `records` count among others) from the
 *   STATE line of a short-lived observer, for "has every server got every record yet?". It costs
 *   the server one STATE line (its state and its 2,000 newest records); no events are parsed.
 *
 * The handshake is the herd's own (servers/handshake.ts, role `observer`).
 *
 * @module
 */

import { HerdAuth } from "../servers/auth.ts";
import { dialHandshake } from "../servers/handshake.ts";
import { LineSplitter } from "../servers/lines.ts";
import { dialLinkPort } from "../servers/link_port.ts";

const decoder = new TextDecoder("latin1");

/** Sees one server's new records. */
export interface Watcher {
  /** performance.now() when (client, time) was seen at the server, or null by `deadline`. */
  arrival(client: string, time: string, deadline: number): Promise<number | null>;
  close(): void;
}

export { randomHex } from "../servers/text.ts";

/**
 * Opens a connection and runs the observer handshake; returns it with what the server sent after
 * `HERD2 WATCHING` in the same reads (the start of the STATE line, maybe more).
 */
async function dialObserver(
  port: number,
  server: string,
  secret: string,
): Promise<{ conn: Deno.TcpConn; head: string }> {
  // The server's link port (asked on its client port; an older server's client port itself).
  const conn = await dialLinkPort({ name: server, host: "127.0.0.1", port });
  const splitter = new LineSplitter(64 * 1024 * 1024);
  const r = await dialHandshake(new HerdAuth(secret), conn, splitter, "observer", "bench", server);
  if (!r.ok) {
    conn.close();
    throw new Error(`observer handshake: ${r.reason}`);
  }
  const head = r.rest.map((l) => l.text + "\n").join("") + (splitter.flush()?.text ?? "");
  return { conn, head };
}

/**
 * An authenticated observer stream on `server`; a record has arrived when its
 * `location.accepted` EVENT line is read. Unlike WHATSAT polling this costs the server nothing
 * between arrivals and runs no Places query (it does cost the server one JSON line per event
 * while load runs). With `only`, EVENT lines not containing that text are skipped unparsed, so
 * the bench keeps up with a server under load.
 */
export async function observerWatcher(
  port: number,
  server: string,
  secret: string,
  only?: string,
): Promise<Watcher> {
  const { conn, head } = await dialObserver(port, server, secret);
  const seen = new Map<string, number>();
  const waiters = new Map<string, (t: number) => void>();
  (async () => {
    const buf = new Uint8Array(256 * 1024);
    let tail = "";
    try {
      for (let text = head; true;) {
        const now = performance.now(); // arrival = when the bytes came in, before any parsing
        const lines = (tail + text).split("\n");
        tail = lines.pop()!;
        for (const line of lines) {
          if (!line.startsWith("EVENT ") || !line.includes('"location.accepted"')) continue;
          if (only !== undefined && !line.includes(only)) continue;
          const e = JSON.parse(line.slice(6));
          const key = `${e.record.client} ${e.record.time}`;
          const waiter = waiters.get(key);
          if (waiter) waiter(now);
          else seen.set(key, now);
        }
        const n = await conn.read(buf);
        if (n === null) break;
        text = decoder.decode(buf.subarray(0, n));
      }
    } catch {
      // closed by close() or by the server
    }
  })();
  const close = () => {
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  return {
    arrival(client, time, deadline) {
      const key = `${client} ${time}`;
      const at = seen.get(key);
      if (at !== undefined) {
        seen.delete(key);
        return Promise.resolve(at);
      }
      return new Promise<number | null>((resolve) => {
        const t = setTimeout(() => {
          waiters.delete(key);
          resolve(null);
        }, Math.max(0, deadline - performance.now()));
        waiters.set(key, (now) => {
          clearTimeout(t);
          waiters.delete(key);
          resolve(now);
        });
      });
    },
    close,
  };
}

/**
 * An observer that reads and drops everything `server` sends (a dashboard watching it would get
 * the same bytes), counting them; nothing is parsed, so the bench spends little on it.
 */
export async function observerDrain(
  port: number,
  server: string,
  secret: string,
): Promise<{ bytes(): number; close(): void }> {
  const { conn, head } = await dialObserver(port, server, secret);
  let bytes = head.length;
  (async () => {
    const buf = new Uint8Array(256 * 1024);
    try {
      for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) bytes += n;
    } catch {
      // closed by close() or by the server
    }
  })();
  return {
    bytes: () => bytes,
    close: () => {
      try {
        conn.close();
      } catch { /* already closed */ }
    },
  };
}

/** A server's state as its STATE line gives it (servers/server.ts `ServerState`). */
export interface ObservedState {
  name: string;
  running: boolean;
  connections: number;
  records: number;
  links: { peer: string; up: boolean }[];
}

/**
 * One server's state, read from the STATE line of a short-lived observer; null when the server
 * does not answer within `timeoutMs` (down, or refusing).
 */
export async function serverState(
  port: number,
  server: string,
  secret: string,
  timeoutMs = 3000,
): Promise<ObservedState | null> {
  let conn: Deno.TcpConn;
  let text: string;
  try {
    ({ conn, head: text } = await dialObserver(port, server, secret));
  } catch {
    return null;
  }
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  }, timeoutMs);
  try {
    const buf = new Uint8Array(256 * 1024);
    while (true) {
      const at = text.indexOf("STATE ");
      const end = at < 0 ? -1 : text.indexOf("\n", at);
      if (end >= 0) return JSON.parse(text.slice(at + 6, end)).server as ObservedState;
      const n = await conn.read(buf);
      if (n === null) return null;
      text += decoder.decode(buf.subarray(0, n));
    }
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed */ }
  }
}
