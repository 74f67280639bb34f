/**
 * TLS for links and observers (config `"tls"`): each server listens on a separate TLS port
 * (`linkPort`) with its own certificate; a dialler connects over TCP and starts TLS with the
 * peer's *name* as the expected host name, so the certificate must chain to the herd's CA and
 * name that server (a DNS subject alternative name equal to the server's name, any case).
 * The HMAC handshake still runs on top. Deno has no server-side STARTTLS, hence the separate port;
 * the link port's listener is servers/tls_front.ts.
 *
 * @module
 */

import type { TlsConfig } from "./config.ts";
import { ConfigError } from "./config_error.ts";
import { HANDSHAKE_TIMEOUT_MS } from "./handshake.ts";
import { relayBoth } from "./relay.ts";
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

/**
 * Dials `peer`'s TLS link port and completes the TLS handshake within `timeoutMs`, checking that
 * its certificate chains to `ca` and names `peer.name`. Connection errors are thrown as they are;
 * a refused certificate, a failed or late handshake as {@linkcode LinkTlsError}.
 *
 * Deno 2.9 keeps a socket whose TLS handshake is pending open even after `close()` (until the
 * remote answers or goes), so a deadline on a TLS socket to a peer that accepts and never answers
 * would leak one socket per attempt. So TLS runs over a loopback pair instead, relayed to the TCP
 * connection we dialled: at the deadline we close the relay's sockets, which are plain, and the
 * TLS side sees its remote go. The relay carries the link for its life (closing the returned
 * connection ends it).
 */
export async function dialTls(
  peer: { name: string; host: string; linkPort?: number },
  ca: string,
  signal?: AbortSignal,
  timeoutMs = HANDSHAKE_TIMEOUT_MS,
): Promise<Deno.Conn> {
  const hostname = dialHost(peer.host);
  const tcp = await Deno.connect({ hostname, port: peer.linkPort!, signal });
  tcp.setNoDelay(true);
  let pair: [Deno.TcpConn, Deno.TcpConn];
  try {
    pair = await loopbackPair();
  } catch (err) {
    closeQuietly(tcp);
    throw err;
  }
  const [near, far] = pair;
  const cut = () => {
    closeQuietly(tcp);
    closeQuietly(far);
  };
  // Either direction ending ends both.
  void relayBoth(tcp, far).finally(cut);
  let late = false;
  const timer = setTimeout(() => {
    late = true;
    cut();
  }, timeoutMs);
  const abort = () => cut();
  signal?.addEventListener("abort", abort, { once: true });
  try {
    const conn = await Deno.startTls(near, { hostname: peer.name, caCerts: [ca] });
    try {
      await conn.handshake();
    } catch (err) {
      closeQuietly(conn);
      throw err;
    }
    if (late) {
      closeQuietly(conn);
      throw new Error("late");
    }
    return conn;
  } catch (err) {
    cut();
    closeQuietly(near);
    const why = late ? `handshake timeout (${timeoutMs} ms)` : (err as Error).message;
    throw new LinkTlsError(`TLS with ${peer.name}: ${why}`);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", abort);
  }
}

/**
 * Two connected loopback TCP sockets (ours at both ends): a listener on an ephemeral port takes
 * the one connection we make to it, and closes.
 */
async function loopbackPair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const near = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const port = (near.localAddr as Deno.NetAddr).port;
    // Someone else (a local user) may connect first: theirs is closed, ours taken.
    for (;;) {
      const far = await listener.accept();
      if ((far.remoteAddr as Deno.NetAddr).port === port) {
        near.setNoDelay(true);
        far.setNoDelay(true);
        return [near, far];
      }
      closeQuietly(far);
    }
  } finally {
    closeQuietly(listener);
  }
}

/** Where to dial a server that listens on a wildcard address. */
function dialHost(host: string): string {
  return host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" ? "::1" : host;
}
