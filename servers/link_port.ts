/**
 * The dialler's side of the plain link port. In a herd without TLS each server also listens on a
 * link port (its config's `"linkPort"`, or one the system assigns), and links and observers run
 * there, never on a client port: a process that holds a connection to another server's client
 * port is killed with it by `lsof -ti:PORT | xargs kill` (the CS 131 TA grading script's way to
 * stop one server). The dialler asks the client port for the link port and closes that
 * connection at once:
 *
 *     dialler  → acceptor  HERD2 LINKPORT <acceptor>
 *     acceptor → dialler   HERD2 LINKPORT <acceptor> <port>
 *
 * An older server answers `? HERD2 LINKPORT <acceptor>` (a client's bad line): it takes the
 * handshake on its client port, as before, so the dialler dials that. The handshake itself
 * (handshake.ts) is the same on either port.
 *
 * @module
 */

import { binaryToBytes, LineSplitter } from "./lines.ts";
import { closeQuietly, writeAll } from "./io.ts";
import { closeAfter } from "./timeout.ts";
import { HANDSHAKE_TIMEOUT_MS, LineReader } from "./handshake.ts";
import { formatLinkPortQuery, parseLinkPort } from "./wire.ts";

/** Where a server is dialled: its address, its client port and its name. */
export interface LinkTarget {
  name: string;
  host: string;
  port: number;
}

/**
 * Connects to `target`'s link port (asked on its client port first), or to its client port when
 * it is an older server without one. Throws when it cannot be reached, or does not answer the
 * question within `timeoutMs`. `signal` aborts the connects.
 *
 * @example
 * ```ts
 * const conn = await dialLinkPort({ name: "Jaquez", host: "127.0.0.1", port: 12001 });
 * // then dialHandshake(auth, conn, ...) as on any link connection
 * ```
 */
export async function dialLinkPort(
  target: LinkTarget,
  signal?: AbortSignal,
  timeoutMs = HANDSHAKE_TIMEOUT_MS,
): Promise<Deno.TcpConn> {
  const linkPort = await askLinkPort(target, signal, timeoutMs);
  const conn = await Deno.connect({ hostname: target.host, port: linkPort ?? target.port, signal });
  conn.setNoDelay(true);
  return conn;
}

/**
 * Asks `target`'s client port for its link port, closing that connection before it returns.
 * Undefined: an older server (any answer but a link port, or a close without one).
 */
async function askLinkPort(
  target: LinkTarget,
  signal: AbortSignal | undefined,
  timeoutMs: number,
): Promise<number | undefined> {
  const conn = await Deno.connect({ hostname: target.host, port: target.port, signal });
  const timer = closeAfter(conn, timeoutMs);
  try {
    conn.setNoDelay(true);
    await writeAll(conn, binaryToBytes(formatLinkPortQuery(target.name)));
    const line = await new LineReader(conn, new LineSplitter(), []).next();
    if (timer.expired) {
      throw new Error(`no answer from ${target.name} about its link port in ${timeoutMs} ms`);
    }
    return line === undefined ? undefined : parseLinkPort(line, target.name);
  } finally {
    timer.clear();
    closeQuietly(conn);
  }
}
