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
 * A dialler asks only once per port: it dials the link port it learnt first, and asks again
 * only when that is refused or the handshake there fails with an answer that is not that server's
 * (or no answer for 30 s: {@linkcode LinkPortBook.failed}); a server
 * keeps its link port across restarts (link_port_memory.ts), so redials after a restart open no
 * connection to its client port at all. A server that came up between the known port's refusal
 * and the client port's connect is dialled on the known port again before anything is asked:
 * that client-port connection closes at once, unused.
 *
 * @module
 */

import { binaryToBytes, LineSplitter } from "./lines.ts";
import { closeQuietly, writeAll } from "./io.ts";
import { closeAfter } from "./timeout.ts";
import { HANDSHAKE_TIMEOUT_MS, LineReader } from "./handshake.ts";
import { formatLinkPortQuery, parseLinkPort } from "./wire.ts";

/**
 * How long a known link port may fail its handshakes without any answer (a server still loading
 * after it bound it, or stopped) before the dialler asks the client port whether it moved.
 */
export const SILENT_PATIENCE_MS = 30_000;

/** Where a server is dialled: its address, its client port and its name. */
export interface LinkTarget {
  name: string;
  host: string;
  port: number;
}

/**
 * Connects to `target`'s link port (asked on its client port first), or to its client port when
 * it is an older server without one. Throws when it cannot be reached, or does not answer the
 * question within `timeoutMs`. `signal` aborts the connects. A dialler that dials the same
 * servers again uses a {@linkcode LinkPortBook}.
 *
 * @example
 * ```ts
 * const conn = await dialLinkPort({ name: "Jaquez", host: "127.0.0.1", port: 12001 });
 * // then dialHandshake(auth, conn, ...) as on any link connection
 * ```
 */
export function dialLinkPort(
  target: LinkTarget,
  signal?: AbortSignal,
  timeoutMs = HANDSHAKE_TIMEOUT_MS,
): Promise<Deno.TcpConn> {
  return new LinkPortBook().dial(target, signal, timeoutMs);
}

/**
 * The link ports a dialler has learnt, by server name: it dials the one it knows first, and asks
 * the client port only when that is refused, or when the last connection it made there failed
 * its handshake with an answer that is not that server's ({@linkcode LinkPortBook.failed}). So a
 * neighbour that comes back on the same
 * link port (it keeps it across restarts: servers/link_port_memory.ts) is redialled without any
 * connection to its client port, which `lsof -ti:PORT | xargs kill` would kill us with. The
 * handshake is the same whichever way the port was found: a port that is not that server's
 * never links.
 *
 * @example
 * ```ts
 * const book = new LinkPortBook();
 * const conn = await book.dial({ name: "Jaquez", host: "127.0.0.1", port: 12001 });
 * // the handshake on conn failed:
 * book.failed("Jaquez"); // the next dial asks the client port again
 * ```
 */
export class LinkPortBook {
  #ports: Map<string, number>;
  /** Servers whose last dial connected to the port known before it (not freshly answered). */
  #fromMemory = new Set<string>();
  /** Servers whose last dial failed (not followed by a successful one). */
  #lastFailed = new Set<string>();
  /** When a known port's handshakes started failing without an answer, by server. */
  #silentSince = new Map<string, number>();
  #onChange: ((name: string, port: number | undefined) => void) | undefined;

  #silentPatienceMs: number;

  /**
   * `known`: ports learnt before (remembered across a restart); `onChange`: each one learnt or
   * forgotten; `silentPatienceMs`: how long a known port may fail without an answer before it
   * is asked about ({@linkcode SILENT_PATIENCE_MS}).
   */
  constructor(
    known: Iterable<[string, number]> = [],
    onChange?: (name: string, port: number | undefined) => void,
    silentPatienceMs = SILENT_PATIENCE_MS,
  ) {
    this.#ports = new Map(known);
    this.#onChange = onChange;
    this.#silentPatienceMs = silentPatienceMs;
  }

  /** The link port known for `name`, if any. */
  get(name: string): number | undefined {
    return this.#ports.get(name);
  }

  /**
   * Connects to `target`'s link port: the known one first, else (or when refused) the one its
   * client port names, or its client port at an older server. Throws as {@linkcode dialLinkPort}.
   */
  async dial(
    target: LinkTarget,
    signal?: AbortSignal,
    timeoutMs = HANDSHAKE_TIMEOUT_MS,
  ): Promise<Deno.TcpConn> {
    const { name, host } = target;
    this.#fromMemory.delete(name);
    // The dial before this one linked (or there was none): any silence before it is over.
    if (!this.#lastFailed.delete(name)) this.#silentSince.delete(name);
    const known = this.#ports.get(name);
    if (known !== undefined) {
      try {
        const conn = await connect(host, known, signal);
        this.#fromMemory.add(name);
        return conn;
      } catch (err) {
        if (signal?.aborted) throw err;
        // Refused: it listens elsewhere now (or is down: then so is its client port).
      }
    }
    const front = await Deno.connect({ hostname: host, port: target.port, signal });
    if (known !== undefined) {
      // The client port is up. If the server came up since its known port refused us (it binds
      // that one first: cli/early_listen.ts), the known port takes us now: we leave the client
      // port at once, with nothing said (no question, no connection held while it is answered).
      try {
        const conn = await connect(host, known, signal);
        closeQuietly(front);
        this.#fromMemory.add(name);
        return conn;
      } catch (err) {
        if (signal?.aborted) {
          closeQuietly(front);
          throw err;
        }
      }
    }
    const linkPort = await askLinkPort(front, target.name, timeoutMs);
    this.#set(name, linkPort);
    return await connect(host, linkPort ?? target.port, signal);
  }

  /**
   * The dial of `name` failed, or the handshake on the connection {@linkcode LinkPortBook.dial}
   * last returned for it: if that was a port known from before, it is forgotten (whatever
   * listens there may not be that server), and the next dial asks. Unless the failure was
   * `inconclusive` (handshake.ts: no answer at all, or one that proved the secret): a restarted
   * server's link port listens before it is ready to answer, over 3 s at load 20, and a
   * stopped one's backlog holds connections unanswered; asking its client port then would
   * connect to it (the race link_port_memory.proc_test.ts saw). Only a port silent for
   * {@linkcode SILENT_PATIENCE_MS} is asked about, as another process's listener may say nothing.
   */
  failed(name: string, inconclusive = false): void {
    this.#lastFailed.add(name);
    if (!this.#fromMemory.delete(name)) return;
    if (inconclusive) {
      const now = performance.now();
      const since = this.#silentSince.get(name) ?? now;
      this.#silentSince.set(name, since);
      if (now - since < this.#silentPatienceMs) return;
    }
    this.#silentSince.delete(name);
    this.#set(name, undefined);
  }

  #set(name: string, port: number | undefined): void {
    if (this.#ports.get(name) === port) return;
    if (port === undefined) this.#ports.delete(name);
    else this.#ports.set(name, port);
    this.#onChange?.(name, port);
  }
}

async function connect(
  hostname: string,
  port: number,
  signal: AbortSignal | undefined,
): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname, port, signal });
  conn.setNoDelay(true);
  return conn;
}

/**
 * Asks server `name` on `conn`, a connection to its client port, for its link port, closing
 * that connection before it returns. Undefined: an older server (any answer but a link port, or
 * a close without one).
 */
async function askLinkPort(
  conn: Deno.TcpConn,
  name: string,
  timeoutMs: number,
): Promise<number | undefined> {
  const timer = closeAfter(conn, timeoutMs);
  try {
    conn.setNoDelay(true);
    await writeAll(conn, binaryToBytes(formatLinkPortQuery(name)));
    const line = await new LineReader(conn, new LineSplitter(), []).next();
    if (timer.expired) {
      throw new Error(`no answer from ${name} about its link port in ${timeoutMs} ms`);
    }
    return line === undefined ? undefined : parseLinkPort(line, name);
  } finally {
    timer.clear();
    closeQuietly(conn);
  }
}
