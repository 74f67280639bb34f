/**
 * The dashboard's TCP front: the dashboard's port is ours (`Deno.listen`), and each connection
 * is relayed to the HTTP server (`Deno.serve`) on a private Unix socket.
 *
 * Why not let `Deno.serve` own the port: it accepts without limit and has no way to close one
 * connection. Out of descriptors, its accept loop rejects `finished` ("Http: Too many open
 * files"), uncaught, which ended the whole `start` process; and an event stream whose client
 * stops reading stays open for good (erroring the body does nothing while the socket write is
 * blocked), holding its descriptor and megabytes of queued frames. Here:
 * - accepts back off and retry on errors (servers/descriptors.ts);
 * - each connection counts against the process's descriptor budget (it costs three: the client's
 *   socket and both ends of the relay), and the dashboard may hold only its share of it
 *   (`dashboardConnectionCap`); past either it gets a 503 JSON error and is closed;
 * - a connection whose client accepts no bytes for `stallMs` is closed for real (the event hub
 *   cuts such a subscriber after the same time).
 *
 * @module
 */

import { withTimeout } from "../servers/timeout.ts";
import { acceptConnections, descriptors } from "../servers/descriptors.ts";
import { closeQuietly, writeAll } from "../servers/io.ts";

/** Descriptors one relayed connection holds. */
const FDS_PER_CONNECTION = 3;
/**
 * The dashboard's share of the process's client descriptors: a quarter (at most 256
 * connections, at least 4). Past it, the dashboard answers 503; the rest of the budget stays
 * the herd's clients', so idle or slow connections to the dashboard can never lock them out.
 */
export function dashboardConnectionCap(clientCap = descriptors.clientCap): number {
  return Math.min(256, Math.max(4, Math.floor(clientCap / 4 / FDS_PER_CONNECTION)));
}
const RELAY_CHUNK = 64 * 1024;
const BUSY_BODY = JSON.stringify({ error: "server busy: too many open connections" });
const BUSY = new TextEncoder().encode(
  "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n" +
    `content-length: ${BUSY_BODY.length}\r\nconnection: close\r\n\r\n${BUSY_BODY}`,
);

/** Where the front listens and relays to. */
export interface FrontOptions {
  hostname: string;
  port: number;
  /** The HTTP server's Unix socket. */
  target: string;
  /** Close a connection whose client accepted nothing for this long (ms). */
  stallMs: number;
  /** Accept errors and the like (never with a secret). */
  onError: (message: string) => void;
}

/**
 * A listening front.
 *
 * @example
 * ```ts
 * const target = "/tmp/dashboard.sock"; // the HTTP server's Unix socket
 * const onError = (message: string) => console.error(message);
 * const front = new TcpFront({ hostname: "127.0.0.1", port: 0, target, stallMs: 30_000, onError });
 * console.log(front.addr.port);
 * await front.close();
 * ```
 */
export class TcpFront {
  readonly addr: Deno.NetAddr;
  #listener: Deno.Listener;
  #opts: FrontOptions;
  #conns = new Set<Deno.Conn>();
  #done: Promise<void>;

  constructor(opts: FrontOptions) {
    this.#opts = opts;
    this.#listener = Deno.listen({ hostname: opts.hostname, port: opts.port });
    this.addr = this.#listener.addr as Deno.NetAddr;
    this.#done = this.#run();
  }

  /** Connections being relayed. */
  get connections(): number {
    return this.#conns.size;
  }

  async #run(): Promise<void> {
    const relays = new Set<Promise<void>>();
    for await (const conn of acceptConnections(this.#listener, this.#opts.onError)) {
      const p = this.#relay(conn);
      relays.add(p);
      p.finally(() => relays.delete(p));
    }
    for (const c of this.#conns) closeQuietly(c);
    await Promise.allSettled([...relays]);
  }

  async #relay(client: Deno.Conn): Promise<void> {
    if (
      this.#conns.size >= dashboardConnectionCap() ||
      !descriptors.tryAcquire("client", FDS_PER_CONNECTION)
    ) {
      await writeAll(client, BUSY).catch(() => {});
      closeQuietly(client);
      return;
    }
    let upstream: Deno.Conn | undefined;
    this.#conns.add(client);
    try {
      upstream = await Deno.connect({ transport: "unix", path: this.#opts.target });
      const up = upstream;
      (client as Deno.TcpConn).setNoDelay?.(true);
      const end = () => {
        closeQuietly(client);
        closeQuietly(up);
      };
      // The client's half-close is passed on (the response still comes back); anything else
      // ending either direction, a stalled client above all, ends both.
      const inbound = pipe(client, up, 0).then((eof) => {
        if (eof) return (up as Deno.UnixConn).closeWrite().catch(end);
        end();
      });
      await Promise.all([inbound, pipe(up, client, this.#opts.stallMs).finally(end)]);
    } catch {
      // upstream gone: the HTTP server is stopping
    } finally {
      this.#conns.delete(client);
      closeQuietly(client);
      closeQuietly(upstream);
      descriptors.release(FDS_PER_CONNECTION);
    }
  }

  /** Stops accepting and closes every relayed connection. */
  async close(): Promise<void> {
    closeQuietly(this.#listener);
    await this.#done;
  }
}

/**
 * Copies `from` to `to`; true at EOF, false on an error. With `stallMs`, a write that stays
 * pending that long (the reader accepts nothing) is an error.
 */
async function pipe(from: Deno.Conn, to: Deno.Conn, stallMs: number): Promise<boolean> {
  const buf = new Uint8Array(RELAY_CHUNK);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) return true;
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

function withDeadline(write: Promise<number>, ms: number): Promise<number> {
  return withTimeout(write, ms, { error: () => new Error("stalled") });
}
