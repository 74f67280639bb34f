/**
 * Every HTTP port of ours (the dashboard's, `--ops-port`'s) is a TCP front: the port is ours
 * (`Deno.listen`), and each connection is relayed to the HTTP server (`Deno.serve`) on a private
 * Unix socket. {@linkcode serveHttp} is the one way to listen for HTTP.
 *
 * Why not let `Deno.serve` own the port: it accepts without limit and has no way to close one
 * connection. Out of descriptors, its accept loop rejects `finished` ("Http: Too many open
 * files"), uncaught, which ended the whole process (`start` through its dashboard, `server`
 * through its `--ops-port`); and an event stream whose client
 * stops reading stays open for good (erroring the body does nothing while the socket write is
 * blocked), holding its descriptor and megabytes of queued frames. Here:
 * - accepts back off and retry on errors (servers/descriptors.ts);
 * - each connection counts against the process's descriptor budget (it costs three: the client's
 *   socket and both ends of the relay), and each port may hold only its share of it
 *   (`httpConnectionCap`); past either it gets a 503 JSON error and is closed, except that
 *   when herd clients hold the whole client share, each port still takes two connections from
 *   the reserve (`HTTP_RESERVED_CONNECTIONS`), so a health check answers a busy herd;
 * - a connection whose client accepts no bytes for `stallMs` is closed for real (the event hub
 *   cuts such a subscriber after the same time);
 * - a connection that got no response byte for `stallMs` is closed too (an idle keep-alive, or a
 *   request never finished: slowloris; the event stream's heartbeat keeps a live page's stream
 *   busier than that), and at the cap a new connection takes the place of the one quiet longest
 *   (2.5 s at least: a live stream's frame may come late) instead of being turned away: sockets that never finish a request could
 *   otherwise hold every place, and answer every visitor and health check 503.
 *
 * @module
 */

import { relayPipe } from "./relay.ts";
import { acceptConnections, descriptors } from "./descriptors.ts";
import { closeQuietly, writeAll } from "./io.ts";
import { HeadGuard, type HeadRefusal, headTooLarge } from "./http_head.ts";
import { withTimeout } from "./timeout.ts";
import { errText } from "./text.ts";

/** Descriptors one relayed connection holds. */
const FDS_PER_CONNECTION = 3;
/**
 * One HTTP port's share of the process's client descriptors: a quarter (at most 256
 * connections, at least 4). Past it, the port answers 503; the rest of the budget stays the
 * herd's clients', so idle or slow connections to the dashboard or the ops port can never lock
 * them out.
 */
export function httpConnectionCap(clientCap = descriptors.clientCap): number {
  return Math.min(256, Math.max(4, Math.floor(clientCap / 4 / FDS_PER_CONNECTION)));
}
/** Default for closing a connection whose client accepts nothing, or that got no byte (ms). */
export const HTTP_STALL_MS = 30_000;
/** Pause before the Unix-socket HTTP server listens again after it failed (ms); doubles. */
const RELISTEN_MS = 100;
const RELISTEN_MAX_MS = 5_000;
/**
 * A connection quiet this long (no response byte) may give its place to a new one at the cap.
 * A live event stream gets a frame at least once a second, so this leaves it a stall of 1.5 s
 * (the herd's event loop busy, a frame late) before it could be taken for an idle one; at 1 s a
 * stream lost its place whenever a frame came a little late.
 */
const EVICT_QUIET_MS = 2_500;
/**
 * Connections each HTTP port may hold beyond the clients' share of descriptors, from the
 * reserve: when herd clients fill their share, `/healthz` still answers (a liveness probe that
 * got 503 "server busy" would restart a herd that is only busy). Three descriptors each; at
 * the bound, a new one takes the place of the reserved connection quiet longest (2.5 s at least).
 */
export const HTTP_RESERVED_CONNECTIONS = 2;
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
  target: string | (() => Deno.ConnectOptions);
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
  #conns = new Map<Deno.Conn, Relayed>();
  /** Connections admitted on the reserve (see HTTP_RESERVED_CONNECTIONS). */
  #reserved = 0;
  #done: Promise<void>;
  #sweep: ReturnType<typeof setInterval>;

  constructor(opts: FrontOptions) {
    this.#opts = opts;
    this.#listener = Deno.listen({ hostname: opts.hostname, port: opts.port });
    this.addr = this.#listener.addr as Deno.NetAddr;
    this.#done = this.#run();
    // Closes connections that got no response byte for stallMs (see the module doc).
    this.#sweep = setInterval(() => {
      const now = performance.now();
      for (const r of this.#conns.values()) if (now - r.lastOut >= opts.stallMs) r.end();
    }, Math.max(50, Math.min(5_000, opts.stallMs / 4)));
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
    clearInterval(this.#sweep);
    for (const r of this.#conns.values()) r.end();
    await Promise.allSettled([...relays]);
  }

  /**
   * The connection quiet longest (of those on the reserve, with `reserved`), if it has been quiet
   * EVICT_QUIET_MS; it is marked taken.
   */
  #quietest(reserved = false): Relayed | undefined {
    let best: Relayed | undefined;
    for (const r of this.#conns.values()) {
      if (reserved && !r.reserved) continue;
      if (!r.evicted && (best === undefined || r.lastOut < best.lastOut)) best = r;
    }
    if (best === undefined || performance.now() - best.lastOut < EVICT_QUIET_MS) return undefined;
    best.evicted = true;
    return best;
  }

  async #relay(client: Deno.Conn): Promise<void> {
    if (this.#conns.size >= httpConnectionCap()) {
      const victim = this.#quietest();
      if (victim !== undefined) {
        victim.end();
        await victim.done;
      }
    }
    let reserved = false;
    if (
      this.#conns.size < httpConnectionCap() &&
      !descriptors.tryAcquire("client", FDS_PER_CONNECTION)
    ) {
      // The clients' share is full: the port's own small reserve.
      if (this.#reserved >= HTTP_RESERVED_CONNECTIONS) {
        const victim = this.#quietest(true);
        if (victim !== undefined) {
          victim.end();
          await victim.done;
        }
      }
      reserved = this.#reserved < HTTP_RESERVED_CONNECTIONS &&
        descriptors.tryAcquire("hard", FDS_PER_CONNECTION);
      if (!reserved) return this.#busy(client);
      this.#reserved++;
    } else if (this.#conns.size >= httpConnectionCap()) return this.#busy(client);

    let upstream: Deno.Conn | undefined;
    let finished!: () => void;
    const me: Relayed = {
      lastOut: performance.now(),
      evicted: false,
      reserved,
      end: () => {
        closeQuietly(client);
        closeQuietly(upstream);
      },
      done: new Promise<void>((resolve) => (finished = resolve)),
    };
    this.#conns.set(client, me);
    try {
      const target = this.#opts.target;
      upstream = typeof target === "string"
        ? await Deno.connect({ transport: "unix", path: target })
        : await Deno.connect(target());
      const up = upstream;
      (client as Deno.TcpConn).setNoDelay?.(true);
      const end = me.end;
      // The client's half-close is passed on (whether a response still comes back is Deno.serve's
      // choice: often it does not, as without a front); anything else ending either direction, a
      // stalled client above all, ends both.
      // A request head past servers/http_head.ts's bounds never reaches the HTTP server: once
      // what it sent is passed on, the client gets our 431.
      let refused: HeadRefusal | undefined;
      const inbound = guardedPipe(client, up, (why) => refused = why).then((eof) => {
        // After a refused head, the requests before it (complete: only those were passed on)
        // are still answered: the HTTP server sees the end of its input, answers them and closes.
        if (eof || refused !== undefined) return (up as Deno.UnixConn).closeWrite().catch(end);
        end();
      });
      const outbound = relayPipe(
        up,
        client,
        this.#opts.stallMs,
        () => me.lastOut = performance.now(),
      ).then(() => refused === undefined ? undefined : refuse(client, refused, this.#opts.stallMs));
      await Promise.all([inbound, outbound.finally(end)]);
    } catch {
      // upstream gone: the HTTP server is stopping
    } finally {
      this.#conns.delete(client);
      closeQuietly(client);
      closeQuietly(upstream);
      descriptors.release(FDS_PER_CONNECTION);
      if (reserved) this.#reserved--;
      finished();
    }
  }

  /** Answers 503 "server busy" and closes. */
  async #busy(client: Deno.Conn): Promise<void> {
    await writeAll(client, BUSY).catch(() => {});
    closeQuietly(client);
  }

  /** Stops accepting and closes every relayed connection. */
  async close(): Promise<void> {
    closeQuietly(this.#listener);
    await this.#done;
  }
}

/**
 * Copies the client's bytes to the HTTP server through a {@linkcode HeadGuard}: true at EOF,
 * false on an error or a refused head (`onRefused` says why first).
 */
async function guardedPipe(
  from: Deno.Conn,
  to: Deno.Conn,
  onRefused: (why: HeadRefusal) => void,
): Promise<boolean> {
  const guard = new HeadGuard();
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) return true;
      const out = guard.feed(buf.subarray(0, n));
      if (!Array.isArray(out)) {
        onRefused(out);
        return false;
      }
      for (const part of out) await writeAll(to, part);
    }
  } catch {
    return false; // reset or closed
  }
}

/** Most bytes read and dropped after a 431, so that closing sends no reset over the answer. */
const DRAIN_BYTES = 4 * 1024 * 1024;
const DRAIN_MS = 1_000;

/**
 * Answers a refused head with its 431 (or 400) and half-closes; reads (and drops) what the client is still
 * sending for a moment: closing a socket with unread bytes resets it, and a reset can reach the
 * client before it has read the answer.
 */
async function refuse(client: Deno.Conn, why: HeadRefusal, stallMs: number): Promise<void> {
  try {
    await withTimeout(writeAll(client, headTooLarge(why.refused, why.status)), stallMs);
    await client.closeWrite();
    const buf = new Uint8Array(64 * 1024);
    const until = performance.now() + DRAIN_MS;
    let drained = 0;
    while (drained < DRAIN_BYTES) {
      const left = until - performance.now();
      if (left <= 0) break;
      const n = await withTimeout(client.read(buf), left);
      if (n === null) break;
      drained += n;
    }
  } catch {
    // gone, stalled or out of time: closed by the caller
  }
}

/** One relayed connection. */
interface Relayed {
  /** When the last response bytes were passed on (or the connection was accepted). */
  lastOut: number;
  /** Picked to make room for a new connection. */
  evicted: boolean;
  /** Admitted on the port's reserve, beyond the clients' share. */
  reserved: boolean;
  /** Closes both ends. */
  end(): void;
  /** Resolves once its descriptors are released. */
  done: Promise<void>;
}

/** Where {@linkcode serveHttp} listens. */
export interface ServeHttpOptions {
  hostname: string;
  port: number;
  /** See {@linkcode FrontOptions.stallMs}; default {@linkcode HTTP_STALL_MS}. */
  stallMs?: number;
  /** Errors go to stderr after this prefix (`dashboard`, `ops`). */
  label: string;
}

/** A listening HTTP port. */
export interface ServedHttp {
  addr: Deno.NetAddr;
  /** Resolves once closed. */
  finished: Promise<void>;
  /** Stops accepting, closes every connection and the HTTP server. */
  close(): Promise<void>;
}

/**
 * Serves `handler` on hostname:port behind a {@linkcode TcpFront}: the one way our HTTP ports
 * listen. Should the private HTTP server fail (its accept erred: out of descriptors), it listens
 * again (same socket, or a new loopback port); nothing here rejects unhandled. Throws when the
 * port cannot be bound.
 *
 * @example
 * ```ts
 * const served = serveHttp(() => new Response("ok"), { hostname: "127.0.0.1", port: 0, label: "ops" });
 * console.log(served.addr.port);
 * await served.close();
 * ```
 */
export function serveHttp(
  handler: (req: Request, info: unknown) => Response | Promise<Response>,
  opts: ServeHttpOptions,
): ServedHttp {
  const onError = (message: string) => console.error(`${opts.label}: ${message}`);
  let closing = false;
  let server: Deno.HttpServer | undefined;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let pause = RELISTEN_MS;
  // A Unix socket in a fresh directory (mode 0700): only this user can reach the HTTP server
  // behind the front. Without the permissions for one (`deno task server` may write only its
  // logs and data, and reach no Unix socket), an ephemeral loopback port.
  let sockDir: string | undefined;
  try {
    sockDir = Deno.makeTempDirSync({ prefix: `herd-${opts.label}-` });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotCapable)) throw err;
  }
  let path = sockDir === undefined ? undefined : `${sockDir}/http.sock`;
  let loopbackPort = 0;
  const listen = () => {
    let s: Deno.HttpServer;
    if (path !== undefined) {
      try {
        Deno.removeSync(path);
      } catch { /* first time, or already gone */ }
      s = Deno.serve({ transport: "unix", path, onListen: () => {} }, handler);
    } else {
      s = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
      loopbackPort = (s.addr as Deno.NetAddr).port;
    }
    server = s;
    const listenedAt = performance.now();
    s.finished.catch((err) => {
      if (closing || server !== s) return;
      // One that stayed up a while starts the back-off afresh; one that fails again at once (an
      // accept out of descriptors) backs off, rather than listening and failing every 100 ms.
      if (performance.now() - listenedAt > RELISTEN_MAX_MS) pause = RELISTEN_MS;
      onError(`HTTP server failed (${errText(err, true)}); listening again in ${pause} ms`);
      retry = setTimeout(relisten, pause);
      pause = Math.min(pause * 2, RELISTEN_MAX_MS);
    });
  };
  const relisten = () => {
    if (closing) return;
    try {
      listen();
    } catch (err) {
      onError(`HTTP server cannot listen again (${errText(err, true)}); retrying in ${pause} ms`);
      retry = setTimeout(relisten, pause);
      pause = Math.min(pause * 2, RELISTEN_MAX_MS);
    }
  };
  const stopServer = async () => {
    closing = true;
    clearTimeout(retry);
    await server?.shutdown().catch(() => {});
    if (sockDir !== undefined) await Deno.remove(sockDir, { recursive: true }).catch(() => {});
  };
  try {
    listen();
  } catch (err) {
    // The directory was allowed, the socket not (a Unix socket needs net permission too).
    if (!(err instanceof Deno.errors.NotCapable) || path === undefined) {
      void stopServer();
      throw err;
    }
    Deno.removeSync(sockDir!, { recursive: true });
    sockDir = path = undefined;
    listen();
  }
  let front: TcpFront;
  try {
    front = new TcpFront({
      hostname: opts.hostname,
      port: opts.port,
      target: path ?? (() => ({ hostname: "127.0.0.1", port: loopbackPort })),
      stallMs: opts.stallMs ?? HTTP_STALL_MS,
      onError,
    });
  } catch (err) {
    void stopServer();
    throw err;
  }
  let done: Promise<void> | undefined;
  const close = () =>
    done ??= (async () => {
      await front.close();
      await stopServer();
    })();
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  return {
    addr: front.addr,
    finished,
    close: () => close().finally(finish),
  };
}
