/**
 * The TLS link port's front: the public link port is our own TCP listener (`Deno.listen`), and
 * each connection is relayed to a private TLS listener (`Deno.listenTls` on an ephemeral
 * 127.0.0.1 port) that only the front dials.
 *
 * Why: Deno 2.9 has no server-side TLS upgrade and no handshake timeout, and keeps an accepted
 * socket whose TLS handshake is pending open even after `close()`, until the remote sends its
 * handshake or goes. Listening with `Deno.listenTls` on the public port, 16 silent sockets held
 * every handshake place of the process for as long as they liked, and no neighbour could link.
 * Here the remote of the private socket is the front's own loopback socket: closing it ends the
 * pending handshake for real. So:
 * - a connection has {@linkcode HANDSHAKE_TIMEOUT_MS} from its accept to finish TLS; past it
 *   (silent, or one byte a second) both of the front's sockets are closed, and with them the
 *   private one;
 * - at most {@linkcode TLS_PENDING_MAX} connections of the process are before the end of their
 *   TLS handshake at once; at the cap a new connection is taken, and the pending connection that
 *   has sent the fewest bytes (the oldest of those) is closed to make room. A neighbour sends its
 *   whole ClientHello at once and finishes within a round trip or two, so silent and trickling
 *   sockets give way first, however many come back; while twice that many are not yet closed,
 *   the port accepts nothing (a storm of reconnects waits in the kernel's backlog, on no
 *   descriptor of ours);
 * - a connection through TLS is the server's, as before (the herd handshake has its own 3 s);
 *   the relay carries it for its life.
 *
 * Design limits: the private listener is a loopback port, so a local user can connect to it
 * directly, bypassing the front (such a connection is closed once its handshake ends, and is
 * never served, but its pending handshake holds a descriptor until that user closes it; Deno's
 * TLS listener takes no Unix socket). A remote attacker that sends whole ClientHellos as fast as
 * a neighbour (so our side does TLS work for each) competes with neighbours on equal terms.
 *
 * @module
 */

import { acceptConnections, descriptors } from "./descriptors.ts";
import { HANDSHAKE_TIMEOUT_MS } from "./handshake.ts";
import { relayBoth } from "./relay.ts";
import { closeQuietly, writeAll } from "./io.ts";
import { hostPort } from "./http_host.ts";
import type { TlsFiles } from "./tls.ts";

/**
 * How many connections of the process may be before the end of their TLS handshake at once:
 * each holds three descriptors (the remote's socket and both ends of the relay), and together
 * they take at most a quarter of the descriptor reserve (8 under `ulimit -n 256`, 21 under 1024),
 * at least 8.
 */
export const TLS_PENDING_MAX = Math.max(
  8,
  Math.floor((descriptors.limit - descriptors.clientCap) / 4 / 3),
);

/** Descriptors the front holds per connection (the remote's socket, the relay's dialled end). */
const FRONT_FDS = 2;
/** The first read of a connection (a ClientHello fits). */
const FIRST_READ = 16 * 1024;

/** One relayed connection. */
interface Relay {
  /** The remote's address, as the server should see it. */
  addr: Deno.NetAddr;
  remote: string;
  /** When it was accepted (ms, performance.now()). */
  since: number;
  /** Bytes the remote sent so far. */
  bytesIn: number;
  /** Through TLS: the server's now. */
  admitted: boolean;
  ended: boolean;
  /** Closes both of the front's sockets (and so ends the private one's handshake). */
  end(): void;
}

/** The process's connections before the end of their TLS handshake, on every link port. */
const pending = new Set<Relay>();
/**
 * Connections not (yet) through TLS whose sockets are still open: the pending ones and those
 * being closed. Past twice the cap the link ports accept nothing until some are gone (the rest
 * wait in the kernel's backlog), so a storm of reconnects cannot hold more descriptors than that
 * while the connections it displaces are closed.
 */
const unsettled = { count: 0, wake: [] as (() => void)[] };

function settled(): void {
  unsettled.count--;
  const wake = unsettled.wake;
  unsettled.wake = [];
  for (const w of wake) w();
}

/** The pending connection that has sent the fewest bytes, the oldest of those. */
function leastAdvanced(): Relay | undefined {
  let best: Relay | undefined;
  for (const r of pending) {
    if (
      best === undefined || r.bytesIn < best.bytesIn ||
      (r.bytesIn === best.bytesIn && r.since < best.since)
    ) best = r;
  }
  return best;
}

/** Where a {@linkcode TlsFront} listens, with what, and whom it tells. */
export interface TlsFrontOptions {
  hostname: string;
  port: number;
  files: TlsFiles;
  /** Accept errors and the cap (never with a secret). */
  onError: (message: string) => void;
  /** A connection that did not get through TLS (timeout, TLS error). */
  onRejected: (remote: string, reason: string) => void;
  /** From accept to the end of the TLS handshake (ms); default {@linkcode HANDSHAKE_TIMEOUT_MS}. */
  timeoutMs?: number;
}

/**
 * A listening TLS link port.
 *
 * @example
 * ```ts
 * import { TlsFront } from "./tls_front.ts";
 * declare const files: { ca: string; cert: string; key: string };
 * const front = new TlsFront({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   files,
 *   onError: console.error,
 *   onRejected: (remote, reason) => console.error(remote, reason),
 * });
 * for await (const conn of front.accepted()) conn.close();
 * ```
 */
export class TlsFront {
  readonly addr: Deno.NetAddr;
  #opts: TlsFrontOptions;
  #public: Deno.Listener;
  #private: Deno.TlsListener;
  #privatePort: number;
  /** The relay whose dialled end has this local port (the private side's remote port). */
  #byPort = new Map<number, Relay>();
  #relays = new Set<Relay>();
  #running: Promise<void>;
  #saidCap = false;

  /** Throws when the port cannot be bound (nothing is left listening then). */
  constructor(opts: TlsFrontOptions) {
    this.#opts = opts;
    this.#private = Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      cert: opts.files.cert,
      key: opts.files.key,
    });
    this.#privatePort = (this.#private.addr as Deno.NetAddr).port;
    try {
      this.#public = Deno.listen({ hostname: opts.hostname, port: opts.port });
    } catch (err) {
      this.#private.close();
      throw err;
    }
    this.addr = this.#public.addr as Deno.NetAddr;
    this.#running = this.#run();
  }

  async #run(): Promise<void> {
    const relays = new Set<Promise<void>>();
    for await (const conn of acceptConnections(this.#public, this.#opts.onError)) {
      unsettled.count++;
      const p = this.#relay(conn);
      relays.add(p);
      p.finally(() => relays.delete(p));
      while (unsettled.count >= 2 * TLS_PENDING_MAX) {
        await new Promise<void>((resolve) => unsettled.wake.push(resolve));
      }
    }
    for (const r of this.#relays) r.end();
    await Promise.allSettled([...relays]);
  }

  async #relay(client: Deno.Conn): Promise<void> {
    if (pending.size >= TLS_PENDING_MAX) {
      // Said once per spell at the cap: every new connection still gets in.
      if (!this.#saidCap) {
        this.#opts.onError(
          `TLS link handshakes at the cap (${TLS_PENDING_MAX} pending): each new connection ` +
            `takes the place of the one that sent the fewest bytes`,
        );
      }
      this.#saidCap = true;
      leastAdvanced()?.end();
    } else if (pending.size < TLS_PENDING_MAX / 2) this.#saidCap = false;
    if (!descriptors.tryAcquire("hard", FRONT_FDS)) {
      closeQuietly(client);
      return settled();
    }
    const addr = client.remoteAddr as Deno.NetAddr;
    let upstream: Deno.Conn | undefined;
    const r: Relay = {
      addr,
      remote: hostPort(addr.hostname, addr.port),
      since: performance.now(),
      bytesIn: 0,
      admitted: false,
      ended: false,
      end: () => {
        r.ended = true;
        pending.delete(r);
        closeQuietly(client);
        closeQuietly(upstream);
      },
    };
    pending.add(r);
    this.#relays.add(r);
    const ms = this.#opts.timeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    const timer = setTimeout(() => {
      if (r.admitted || r.ended) return;
      this.#opts.onRejected(r.remote, `TLS handshake timeout (${ms} ms)`);
      r.end();
    }, ms);
    let port: number | undefined;
    try {
      (client as Deno.TcpConn).setNoDelay(true);
      // Nothing is relayed before the first bytes: a silent socket costs one descriptor, and
      // closing it at its deadline or for a newcomer is immediate.
      const first = new Uint8Array(FIRST_READ);
      const n = await client.read(first);
      if (n === null || r.ended) return;
      r.bytesIn += n;
      const up = await Deno.connect({ hostname: "127.0.0.1", port: this.#privatePort });
      upstream = up;
      if (r.ended) return;
      up.setNoDelay(true);
      port = (up.localAddr as Deno.NetAddr).port;
      this.#byPort.set(port, r);
      await writeAll(up, first.subarray(0, n));
      // Either direction ending ends both (TLS has its own close_notify).
      await relayBoth(client, up, (n) => (r.bytesIn += n));
    } catch {
      // the private listener is gone: stopping
    } finally {
      clearTimeout(timer);
      r.end();
      this.#relays.delete(r);
      if (!r.admitted) settled();
      if (port !== undefined) this.#byPort.delete(port);
      descriptors.release(FRONT_FDS);
    }
  }

  /**
   * Yields each relayed connection once its TLS handshake is done, in time; its `remoteAddr` is
   * the remote's, not the relay's. Ends when the front closes.
   */
  async *accepted(): AsyncGenerator<Deno.TlsConn> {
    const ready: Deno.TlsConn[] = [];
    let wake: (() => void) | undefined;
    let done = false;
    const handshake = async (conn: Deno.TlsConn) => {
      // Looked up once bytes came through: the relay registered its port before it passed any.
      const relayOf = () => this.#byPort.get((conn.remoteAddr as Deno.NetAddr).port);
      try {
        await conn.handshake();
      } catch (err) {
        const relay = relayOf();
        if (relay !== undefined && !relay.ended) {
          this.#opts.onRejected(relay.remote, `TLS: ${(err as Error).message}`);
          relay.end();
        }
        return closeQuietly(conn);
      }
      const relay = relayOf();
      // Not through the front (a local user dialled the private port), or given up meanwhile.
      if (relay === undefined || relay.ended) return closeQuietly(conn);
      relay.admitted = true;
      pending.delete(relay);
      settled();
      // The server logs and checks the remote's address, not the relay's loopback one.
      Object.defineProperty(conn, "remoteAddr", { value: relay.addr });
      ready.push(conn);
      wake?.();
    };
    const accepting = (async () => {
      for await (const conn of acceptConnections(this.#private, this.#opts.onError)) {
        handshake(conn as Deno.TlsConn);
      }
      done = true;
      wake?.();
    })();
    while (!done || ready.length > 0) {
      const conn = ready.shift();
      if (conn !== undefined) yield conn;
      else await new Promise<void>((resolve) => (wake = resolve));
    }
    await accepting;
  }

  /** Stops accepting and closes every relayed connection. */
  async close(): Promise<void> {
    closeQuietly(this.#public);
    closeQuietly(this.#private);
    // Also wakes the accept loop should it wait for connections to settle.
    for (const r of this.#relays) r.end();
    await this.#running;
  }
}
