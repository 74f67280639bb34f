/**
 * TLS for links and observers (config `"tls"`): each server listens on a separate TLS port
 * (`linkPort`) with its own certificate; a dialler connects over TCP and starts TLS with the
 * peer's *name* as the expected host name, so the certificate must chain to the herd's CA and
 * name that server (a DNS subject alternative name equal to the server's name, any case).
 * The HMAC handshake still runs on top. Deno has no server-side STARTTLS, hence the separate port.
 *
 * @module
 */

import { ConfigError, type ServerConfig, type TlsConfig } from "./config.ts";
import { acceptConnections, descriptors } from "./descriptors.ts";
import { HANDSHAKE_TIMEOUT_MS } from "./handshake.ts";
import { closeQuietly } from "./io.ts";

/** A server's PEMs, read once. */
export interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

/** A refused TLS handshake with a peer (its certificate, mostly); the message is one line. */
export class LinkTlsError extends Error {
  override name = "LinkTlsError";
}

function read(path: string, what: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (err) {
    // An unreadable file is a config problem: one line, exit 2, at start.
    throw new ConfigError(`cannot read TLS ${what} ${path}: ${(err as Error).message}`);
  }
}

/**
 * Reads the CA, and the certificate and key of server `name` (`{name}` in their paths).
 *
 * @example
 * ```ts
 * const files = loadTlsFiles({ ca: "ca.pem", cert: "{name}.pem", key: "{name}.key" }, "Hill");
 * ```
 */
export function loadTlsFiles(tls: TlsConfig, name: string): TlsFiles {
  return {
    ca: read(tls.ca, "CA"),
    cert: read(tls.cert.replaceAll("{name}", name), "certificate"),
    key: read(tls.key.replaceAll("{name}", name), "key"),
  };
}

/** Reads just the herd's CA (observers need no certificate of their own). */
export function loadTlsCa(tls: TlsConfig): string {
  return read(tls.ca, "CA");
}

/** Listens for TLS links and observers on the server's `linkPort`. */
export function listenLinks(server: ServerConfig, files: TlsFiles): Deno.TlsListener {
  return Deno.listenTls({
    hostname: server.host,
    port: server.linkPort!,
    cert: files.cert,
    key: files.key,
  });
}

/**
 * How many accepted connections may be in their TLS handshake at once, process-wide: a quarter
 * of the descriptor reserve (16 under `ulimit -n 256`, 64 under 1024), at least 8. Deno 2.9
 * keeps an accepted socket open while its TLS handshake is pending, even after `close()` (until
 * the remote sends its handshake or goes), so a deadline alone frees nothing: 245 connections
 * that never sent a ClientHello held 245 descriptors and every client was refused. Past this
 * many, the link ports stop accepting; the rest wait in the kernel's backlog, which costs no
 * descriptor.
 */
export const TLS_HANDSHAKES_MAX = Math.max(
  8,
  Math.floor((descriptors.limit - descriptors.clientCap) / 4),
);

/** The TLS handshakes in progress in this process, and the accept loops waiting for fewer. */
const inProgress = { count: 0, waiters: [] as (() => void)[] };

/**
 * Resolves true once fewer than {@linkcode TLS_HANDSHAKES_MAX} handshakes are in progress, false
 * if `signal` aborts first. Every waiting loop is woken when one ends (a loop woken first may sit
 * in accept for long), so each link port may take one more: the bound is the cap plus one per
 * link port of the process.
 */
async function handshakeRoom(signal: AbortSignal): Promise<boolean> {
  while (!signal.aborted && inProgress.count >= TLS_HANDSHAKES_MAX) {
    await new Promise<void>((resolve) => {
      const wake = () => {
        signal.removeEventListener("abort", abort);
        resolve();
      };
      const abort = () => {
        inProgress.waiters = inProgress.waiters.filter((w) => w !== wake);
        resolve();
      };
      inProgress.waiters.push(wake);
      signal.addEventListener("abort", abort, { once: true });
    });
  }
  return !signal.aborted;
}

function handshakeEnded(): void {
  inProgress.count--;
  const waiters = inProgress.waiters;
  inProgress.waiters = [];
  for (const wake of waiters) wake();
}

/**
 * Accepts connections on a TLS link port and yields each once its TLS handshake completed, within
 * {@linkcode HANDSHAKE_TIMEOUT_MS} of its accept (the herd handshake that follows has its own).
 * At most {@linkcode TLS_HANDSHAKES_MAX} handshakes (plus one per link port) are in progress at
 * once in the process: a slot is freed when a handshake ends, not at its deadline, because only then is its socket gone
 * (see there). A handshake that fails, or ends past its deadline or after `signal` aborted, is
 * closed and reported to `onRejected`. Ends when the listener closes (or `signal` aborts while it
 * waits for a slot); handshakes still in progress are then closed whenever they end.
 */
export async function* acceptTls(
  listener: Deno.TlsListener,
  signal: AbortSignal,
  onError: (message: string) => void,
  onRejected: (remote: string, reason: string) => void,
  timeoutMs = HANDSHAKE_TIMEOUT_MS,
): AsyncGenerator<Deno.TlsConn> {
  const ready: Deno.TlsConn[] = [];
  let wake: (() => void) | undefined;
  let done = false;
  const handshake = async (conn: Deno.TlsConn) => {
    const addr = conn.remoteAddr as Deno.NetAddr;
    const remote = `${addr.hostname}:${addr.port}`;
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      onRejected(remote, `TLS handshake timeout (${timeoutMs} ms)`);
    }, timeoutMs);
    try {
      await conn.handshake();
      if (late || signal.aborted) closeQuietly(conn);
      else {
        ready.push(conn);
        wake?.();
      }
    } catch (err) {
      if (!late) onRejected(remote, `TLS: ${(err as Error).message}`);
      closeQuietly(conn);
    } finally {
      clearTimeout(timer);
      handshakeEnded();
    }
  };
  const accepting = (async () => {
    const conns = acceptConnections(listener, onError);
    for (;;) {
      // Said once per wait: while the slots are held neighbours cannot link here, and a silent
      // log would hide why.
      if (inProgress.count >= TLS_HANDSHAKES_MAX) {
        onError(
          `TLS handshakes at the cap (${TLS_HANDSHAKES_MAX} in progress): no link accepted ` +
            `until one ends`,
        );
      }
      if (!await handshakeRoom(signal)) break;
      const next = await conns.next();
      if (next.done) break;
      inProgress.count++;
      handshake(next.value as Deno.TlsConn);
    }
    done = true;
    wake?.();
  })();
  while (!done || ready.length > 0) {
    const conn = ready.shift();
    if (conn !== undefined && signal.aborted) closeQuietly(conn);
    else if (conn !== undefined) yield conn;
    else await new Promise<void>((resolve) => (wake = resolve));
  }
  await accepting;
}

/**
 * Dials `peer`'s TLS link port and completes the TLS handshake, checking that its certificate
 * chains to `ca` and names `peer.name`. Connection errors are thrown as they are; a refused
 * certificate or handshake as {@linkcode LinkTlsError}.
 */
export async function dialTls(
  peer: { name: string; host: string; linkPort?: number },
  ca: string,
  signal?: AbortSignal,
): Promise<Deno.Conn> {
  const hostname = dialHost(peer.host);
  const tcp = await Deno.connect({ hostname, port: peer.linkPort!, signal });
  tcp.setNoDelay(true);
  // No deadline on the TLS handshake itself: Deno 2.9 keeps the socket open while a handshake
  // is pending even after close() (seen with a peer that accepts and never answers), so a
  // deadline would leak a socket per attempt; a hung peer that wakes up completes it instead.
  try {
    const conn = await Deno.startTls(tcp, { hostname: peer.name, caCerts: [ca] });
    await conn.handshake();
    return conn;
  } catch (err) {
    closeQuietly(tcp);
    throw new LinkTlsError(`TLS with ${peer.name}: ${(err as Error).message}`);
  }
}

/** Where to dial a server that listens on a wildcard address. */
function dialHost(host: string): string {
  return host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" ? "::1" : host;
}
