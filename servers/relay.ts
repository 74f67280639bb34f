/**
 * Relaying bytes between two sockets: the HTTP ports' fronts (http_front.ts), the TLS link
 * port's front (tls_front.ts) and a TLS dial with a deadline (tls.ts) each sit between a public
 * socket and a private one.
 *
 * @module
 */

import { withTimeout } from "./timeout.ts";

/** Bytes per read while relaying. */
const RELAY_CHUNK = 64 * 1024;

/**
 * Copies `from` to `to`; true at EOF, false on an error. With `stallMs`, a write that stays
 * pending that long (the reader accepts nothing) is an error. `onData` runs on every read, with
 * its byte count.
 *
 * @example
 * ```ts
 * declare const client: Deno.Conn, upstream: Deno.Conn;
 * const eof = await relayPipe(client, upstream, 30_000);
 * ```
 */
export async function relayPipe(
  from: Deno.Conn,
  to: Deno.Conn,
  stallMs: number,
  onData?: (n: number) => void,
): Promise<boolean> {
  const buf = new Uint8Array(RELAY_CHUNK);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) return true;
      onData?.(n);
      let off = 0;
      while (off < n) {
        const write = to.write(buf.subarray(off, n));
        off += stallMs > 0 ? await withDeadline(write, stallMs) : await write;
      }
    }
  } catch {
    return false; // reset, closed, or stalled
  }
}

/**
 * Relays both ways between `a` and `b` until either direction ends (EOF or an error): TLS has
 * its own close_notify, so a half-close is not kept. `onAToB` counts the bytes from `a`.
 *
 * @example
 * ```ts
 * declare const client: Deno.Conn, upstream: Deno.Conn;
 * await relayBoth(client, upstream);
 * ```
 */
export async function relayBoth(
  a: Deno.Conn,
  b: Deno.Conn,
  onAToB?: (n: number) => void,
): Promise<void> {
  await Promise.race([relayPipe(a, b, 0, onAToB), relayPipe(b, a, 0)]);
}

function withDeadline(write: Promise<number>, ms: number): Promise<number> {
  return withTimeout(write, ms, { error: () => new Error("stalled") });
}
