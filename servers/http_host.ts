/**
 * The one parser of a `Host` header (and of a host[:port] someone configured), shared by the ops
 * endpoint and the dashboard: `host`, `host:port`, `[v6]` or `[v6]:port`, nothing else. Anything
 * a browser never sends (userinfo, a second colon, a path, spaces) is refused, not guessed at.
 *
 * @module
 */

/** A host name (lower case; IPv6 in brackets) and a port, if one was given. */
export interface HostPort {
  name: string;
  port?: number;
}

/**
 * Parses `host`, `host:port`, `[v6]` or `[v6]:port` (a `Host` header or an allowed-hosts entry);
 * null when it is anything else (a path, a scheme, spaces, userinfo, a bad port).
 *
 * @example
 * ```ts
 * parseHostPort("LocalHost:8000"); // { name: "localhost", port: 8000 }
 * parseHostPort("[::1]");          // { name: "[::1]" }
 * parseHostPort("127.0.0.1:80@evil.example"); // null
 * ```
 */
export function parseHostPort(text: string): HostPort | null {
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)(?::(\d{1,5}))?$/i.exec(text);
  if (!m) return null;
  const port = m[2] === undefined ? undefined : Number(m[2]);
  if (port !== undefined && (port < 1 || port > 65535)) return null;
  return { name: m[1].toLowerCase(), port };
}

/**
 * A host as a URL or a `Host` header writes it: an IPv6 address in brackets.
 *
 * @example
 * ```ts
 * urlHost("::1"); // "[::1]"
 * urlHost("127.0.0.1"); // "127.0.0.1"
 * ```
 */
export function urlHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/**
 * An address as `host:port` text, an IPv6 address in brackets (`[::1]:12000`, not the ambiguous
 * `::1:12000`): the one way listen lines, log lines, errors and the clients' remote addresses
 * write one, and what Deno's net permission descriptor takes.
 *
 * @example
 * ```ts
 * hostPort("::1", 12000); // "[::1]:12000"
 * hostPort("[::1]", 12000); // "[::1]:12000"
 * hostPort("127.0.0.1", 12000); // "127.0.0.1:12000"
 * ```
 */
export function hostPort(host: string, port: number): string {
  return `${urlHost(host)}:${port}`;
}

/**
 * True when a parsed name is an IP address: a dotted quad of 0-255, or a bracketed IPv6 address.
 *
 * @example
 * ```ts
 * isIpName("10.0.0.7"); // true
 * isIpName("999.0.0.1"); // false
 * ```
 */
export function isIpName(name: string): boolean {
  if (name.startsWith("[")) return name.includes(":");
  const parts = name.split(".");
  return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}
