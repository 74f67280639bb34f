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

import { ConfigError, type TlsConfig } from "./config.ts";
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
