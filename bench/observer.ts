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
 * The handshake is `HERD1 OBSERVE <observer> <unixMs> <nonce> <hex HMAC-SHA256(secret,
 * "OBSERVE|<observer>|<server>|<unixMs>|<nonce>")>`, answered `HERD1 WATCHING <server>`.
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder("latin1");

/** Sees one server's new records. */
export interface Watcher {
  /** performance.now() when (client, time) was seen at the server, or null by `deadline`. */
  arrival(client: string, time: string, deadline: number): Promise<number | null>;
  close(): void;
}

/** Random hex of `bytes` bytes. */
export function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/** hex(HMAC-SHA256(secret, text)). */
export async function hmacHex(secret: string, text: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(text)));
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Opens a connection and sends the OBSERVE handshake (the answer is for the caller to read). */
async function dialObserver(port: number, server: string, secret: string): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const ms = Date.now();
  const nonce = randomHex(8);
  const mac = await hmacHex(secret, `OBSERVE|bench|${server}|${ms}|${nonce}`);
  await conn.write(encoder.encode(`HERD1 OBSERVE bench ${ms} ${nonce} ${mac}\n`));
  return conn;
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
  const conn = await dialObserver(port, server, secret);
  const seen = new Map<string, number>();
  const waiters = new Map<string, (t: number) => void>();
  let watching: (ok: boolean) => void = () => {};
  const handshake = new Promise<boolean>((r) => watching = r);
  (async () => {
    const buf = new Uint8Array(256 * 1024);
    let tail = "";
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) break;
        const now = performance.now(); // arrival = when the bytes came in, before any parsing
        const lines = (tail + decoder.decode(buf.subarray(0, n))).split("\n");
        tail = lines.pop()!;
        for (const line of lines) {
          if (line.startsWith("HERD1 WATCHING ")) watching(true);
          if (!line.startsWith("EVENT ") || !line.includes('"location.accepted"')) continue;
          if (only !== undefined && !line.includes(only)) continue;
          const e = JSON.parse(line.slice(6));
          const key = `${e.record.client} ${e.record.time}`;
          const waiter = waiters.get(key);
          if (waiter) waiter(now);
          else seen.set(key, now);
        }
      }
    } catch {
      // closed by close() or by the server
    }
    watching(false);
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ok = await Promise.race([
    handshake,
    new Promise<boolean>((r) => timer = setTimeout(() => r(false), 3000)),
  ]);
  clearTimeout(timer);
  const close = () => {
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  if (!ok) {
    close();
    throw new Error("no HERD1 WATCHING");
  }
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
  try {
    conn = await dialObserver(port, server, secret);
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
    let text = "";
    while (true) {
      const n = await conn.read(buf);
      if (n === null) return null;
      text += decoder.decode(buf.subarray(0, n));
      const at = text.indexOf("STATE ");
      if (at < 0) continue;
      const end = text.indexOf("\n", at);
      if (end < 0) continue;
      return JSON.parse(text.slice(at + 6, end)).server as ObservedState;
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
