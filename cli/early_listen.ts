/**
 * What `server NAME` starts before the rest of the program loads: its client port, and the
 * offline Places index's build ({@linkcode warmPlacesEarly}).
 *
 * The client port. A grader (the CS 131
 * TA script) starts a server and connects 0.3-0.5 s later without waiting for any line, while
 * loading the herd (zod, the Places provider, the logs, the record log) takes longer
 * than that on a busy machine. From the listen on, the kernel queues connections in the backlog;
 * the server accepts them once it is ready (its store restored, servers/server.ts), so an early
 * client is answered late, never refused, and never from a half-restored store.
 *
 * Only the config's own JSON is read here (validation needs zod): NAME's `host` and `port`. The
 * herd takes the listener only if the validated config names the same address
 * ({@linkcode EarlyListener.take}); otherwise it is closed and the server listens as before. Any
 * failure here (no such file, bad JSON, no permission, port in use) opens nothing: the normal
 * start reports it in its own words.
 *
 * @module
 */

import { DEFAULT_CONFIG_JSON } from "../servers/seed.ts";
import type { PlacesKind } from "../servers/places/select.ts";
import { ARRIVED_NS, closeQuietly } from "../servers/io.ts";
import { nowNs } from "../servers/clock.ts";
import { readConfigText } from "../servers/config_file.ts";
import { ConfigError } from "../servers/config_error.ts";
import { formatLinkPort, formatLinkPortQuery } from "../servers/link_port_lines.ts";
import { LinkPortMemory } from "../servers/link_port_memory.ts";
import { hostPort, urlHost } from "../servers/http_host.ts";
import { lateImport } from "./late_import.ts";

/** Most connections accepted before the herd takes over; the rest wait in the kernel's backlog. */
const EARLY_MAX = 64;
/** Bytes read from an early connection to see whether it is a link-port question. */
const FIRST_READ = 1024;

/** The listener opened early, and the config text it was read from. */
export interface EarlyListener {
  /** The config file's text (undefined for the built-in config): read once, validated later. */
  readonly configText?: string;
  /**
   * The listener, once, if it listens at `hostname:port`; undefined otherwise (or when taken).
   * The server's `listen` hook (servers/server.ts ServerOptions.listen).
   */
  take(addr: { hostname: string; port: number }): Deno.TcpListener | undefined;
  /**
   * The plain link port opened early (herds without TLS), once, if it fits `addr` (port 0: any
   * port the system chose); undefined otherwise. The server's `listenLink` hook.
   */
  takeLink(addr: { hostname: string; port: number }): Deno.TcpListener | undefined;
  /**
   * The link ports this server remembers (servers/link_port_memory.ts): its `self` is the port
   * the early link listener took (the one of the last run when it was free). The server's
   * `linkPorts` option.
   */
  readonly linkPorts?: LinkPortMemory;
  /** Closes the listeners unless they were taken. */
  close(): void;
}

/** An early connection and its first read (started at accept). */
interface Early {
  conn: Deno.TcpConn;
  first: Promise<Uint8Array | null>;
  /** When the first read's bytes arrived (server clock, ns), once they have. */
  at: () => bigint | undefined;
}

/**
 * `conn`, whose first read returns the bytes `first` brings (read before the herd took over),
 * then reads on as usual; everything else is the connection's own.
 */
function replaying(
  conn: Deno.TcpConn,
  first: Promise<Uint8Array | null>,
  at: () => bigint | undefined,
): Deno.TcpConn {
  let pending: Promise<Uint8Array | null> | undefined = first;
  let rest: Uint8Array | undefined;
  // When the bytes of the last read arrived, if they were read early (io.ts ARRIVED_NS).
  let replayed: bigint | undefined;
  const read = async (buf: Uint8Array): Promise<number | null> => {
    if (pending !== undefined) {
      const bytes = await pending;
      pending = undefined;
      if (bytes === null) return null;
      rest = bytes;
    }
    if (rest !== undefined) {
      const n = Math.min(buf.length, rest.length);
      buf.set(rest.subarray(0, n));
      rest = n < rest.length ? rest.subarray(n) : undefined;
      replayed = at();
      return n;
    }
    replayed = undefined;
    return conn.read(buf);
  };
  return new Proxy(conn, {
    get(target, prop) {
      if (prop === "read") return read;
      if (prop === ARRIVED_NS) return () => replayed;
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/**
 * Accepts on `listener` until the herd first accepts on it, so that a neighbour's link-port question
 * (servers/link_port.ts) is answered at once instead of waiting, unread, in the backlog: a
 * neighbour holding a connection to our client port is killed with us by `lsof -ti:PORT |
 * xargs kill` (the CS 131 TA script). Every other connection is handed to the herd with the
 * bytes read from it ({@linkcode replaying}), in the order it came.
 */
function acceptEarly(
  listener: Deno.TcpListener,
  name: string,
  linkPort: number | undefined,
): { take(): Deno.TcpListener; close(): void } {
  const queue: Early[] = [];
  let taken = false;
  let pendingAccept: Promise<Deno.TcpConn> | undefined;
  (async () => {
    while (!taken && queue.length < EARLY_MAX) {
      const next = pendingAccept = listener.accept();
      let conn: Deno.TcpConn;
      try {
        conn = await next;
      } catch {
        return; // closed, or out of descriptors: the herd's accept loop takes it from here
      }
      if (taken) return; // the herd's first accept hands `next` over
      pendingAccept = undefined;
      const buf = new Uint8Array(FIRST_READ);
      let arrived: bigint | undefined;
      const first = conn.read(buf).then((n) => {
        if (n === null) return null;
        arrived = nowNs();
        return buf.subarray(0, n);
      }, () => null);
      const early: Early = { conn, first, at: () => arrived };
      queue.push(early);
      first.then((bytes) => {
        if (linkPort === undefined || bytes === null) return;
        // Not ours once the herd accepts: it takes the queue, and answers the question itself.
        if (taken || new TextDecoder().decode(bytes) !== formatLinkPortQuery(name)) return;
        queue.splice(queue.indexOf(early), 1);
        const answer = new TextEncoder().encode(formatLinkPort(name, linkPort));
        conn.write(answer).catch(() => {}).finally(() => closeQuietly(conn));
      });
    }
  })();
  return {
    take() {
      // Questions are answered here until the herd's first accept: the server takes the
      // listener before it restores its store, and accepts only after that.
      const accept = (): Promise<Deno.TcpConn> => {
        taken = true;
        const e = queue.shift();
        if (e !== undefined) return Promise.resolve(replaying(e.conn, e.first, e.at));
        if (pendingAccept !== undefined) {
          const next = pendingAccept;
          pendingAccept = undefined;
          return next;
        }
        return listener.accept();
      };
      return new Proxy(listener, {
        get(target, prop) {
          if (prop === "accept") return accept;
          if (prop === Symbol.asyncIterator) {
            return async function* () {
              for (;;) yield await accept();
            };
          }
          const v = Reflect.get(target, prop, target);
          return typeof v === "function" ? v.bind(target) : v;
        },
      });
    },
    close() {
      taken = true;
      for (const e of queue.splice(0)) closeQuietly(e.conn);
    },
  };
}

/** A config server entry's address, if the raw JSON gives a usable one. */
function addressOf(json: unknown, name: string): { hostname: string; port: number } | undefined {
  const servers = (json as { servers?: unknown } | null)?.servers;
  if (typeof servers !== "object" || servers === null || !Object.hasOwn(servers, name)) return;
  const entry = (servers as Record<string, unknown>)[name] as { port?: unknown; host?: unknown };
  const port = entry?.port;
  const host = entry?.host ?? "127.0.0.1"; // parseConfig's default
  if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535) return;
  if (typeof host !== "string" || !/^\S+$/.test(host)) return;
  return { hostname: host, port: port as number };
}

/**
 * Opens server `name`'s client port from the config at `path` (the built-in seed config without
 * one), and without TLS its link port: the one it had last time when it is free (remembered in
 * `stateDir`, servers/link_port_memory.ts) when free and neither one of `taken` (ports the
 * flags claim, such as `--ops-port`) nor one the config names, else one the system picks. Never throws: undefined when it cannot;
 * the config text is kept either way when read. (A config too big, or not read in time, is the
 * one error: the start would fail the same way.)
 *
 * @example
 * ```ts
 * const early = await listenEarly("herd.json", "Hill");
 * // ... load and validate; then the server's listen hook:
 * const listener = early?.take({ hostname: "127.0.0.1", port: 12000 }) ??
 *   Deno.listen({ hostname: "127.0.0.1", port: 12000 });
 * early?.close();
 * listener.close();
 * ```
 */
export async function listenEarly(
  path: string | undefined,
  name: string,
  stateDir = "",
  taken: readonly number[] = [],
): Promise<EarlyListener | undefined> {
  const config = await earlyConfig(path);
  if (!("json" in config)) return config.instead;
  const { json, configText } = config;
  const addr = addressOf(json, name);
  const wantLink = linkPortOf(json, name);
  // Without TLS, links dial a link port asked for on the client port: it listens early too, so
  // the question is answered before the herd has loaded (acceptEarly). Unless configured, it is
  // the one of the last run when that is free: neighbours that knew it dial it without asking.
  const linkPorts = addr !== undefined && wantLink === 0
    ? LinkPortMemory.open(stateDir, name, path, [...taken, ...configuredPorts(json)])
    : undefined;
  let listener: Deno.TcpListener | undefined;
  let link: Deno.TcpListener | undefined;
  const listenLink = (port: number): Deno.TcpListener | undefined => {
    const host = port === 0 ? urlHost(addr!.hostname) : hostPort(addr!.hostname, port);
    if (!granted({ name: "net", host })) return undefined;
    try {
      return Deno.listen({ ...addr!, port });
    } catch {
      return undefined; // in use: a remembered port gives way; a configured one, the server says so
    }
  };
  try {
    // `[::1]:P` and `[::1]`: the descriptor throws on `::1:P` and `::1` (for an IPv6 host the
    // early listen was skipped, so clients were refused until the whole start was done).
    if (addr !== undefined && granted({ name: "net", host: hostPort(addr.hostname, addr.port) })) {
      // The link port before the client port: a neighbour whose dial to the link port it knows
      // is refused asks the client port, which refuses too until the link port listens.
      const again = linkPorts?.self;
      if (again !== undefined) link = listenLink(again);
      if (wantLink !== undefined) link ??= listenLink(wantLink);
      listener = Deno.listen(addr);
    }
  } catch {
    // Port in use, no permission: the server's own listen says so.
    link?.close();
    link = undefined;
  }
  if (linkPorts !== undefined && link !== undefined) {
    linkPorts.self = (link.addr as Deno.NetAddr).port;
  }
  // The port, not the listener: the server takes the link listener before it accepts here.
  const linkPortNumber = (link?.addr as Deno.NetAddr | undefined)?.port;
  const early = listener === undefined ? undefined : acceptEarly(listener, name, linkPortNumber);
  return {
    configText,
    linkPorts,
    take(want) {
      if (listener === undefined || addr === undefined) return undefined;
      if (want.hostname !== addr.hostname || want.port !== addr.port) return undefined;
      listener = undefined;
      return early!.take();
    },
    takeLink(want) {
      if (link === undefined || addr === undefined || want.hostname !== addr.hostname) return;
      if (want.port !== 0 && want.port !== (link.addr as Deno.NetAddr).port) return;
      const taken = link;
      link = undefined;
      return taken;
    },
    close() {
      early?.close();
      listener?.close();
      listener = undefined;
      link?.close();
      link = undefined;
    },
  };
}

/**
 * `start`'s client ports, every server's of the config at `path` (the seed's without one), opened
 * before the herd's and the dashboard's modules load, as `server NAME` opens its one
 * ({@linkcode listenEarly}): a grader that runs `deno task start` and connects 0.1-0.5 s later
 * waits in the backlog instead of being refused. Link ports are not opened early: `start` links
 * its own servers in memory and asks no link port. Never throws but for a config too big or not
 * read in time; a port it cannot open is left to the server's own listen.
 *
 * @example
 * ```ts
 * const early = await listenEarlyHerd("herd.json");
 * const listener = early?.take({ hostname: "127.0.0.1", port: 12000 }) ??
 *   Deno.listen({ hostname: "127.0.0.1", port: 12000 });
 * early?.close();
 * listener.close();
 * ```
 */
export async function listenEarlyHerd(
  path: string | undefined,
): Promise<EarlyListener | undefined> {
  const config = await earlyConfig(path);
  if (!("json" in config)) return config.instead;
  const { json, configText } = config;
  const servers = (json as { servers?: unknown } | null)?.servers;
  const names = typeof servers === "object" && servers !== null ? Object.keys(servers) : [];
  // By address: the listener and its early accepts, until the server of that address takes them.
  const open = new Map<
    string,
    { listener: Deno.TcpListener; early: { take(): Deno.TcpListener; close(): void } }
  >();
  for (const name of names) {
    const addr = addressOf(json, name);
    if (addr === undefined) continue;
    // `[::1]:P`, as listenEarly asks: the descriptor throws on `::1:P`.
    const key = hostPort(addr.hostname, addr.port);
    if (open.has(key) || !granted({ name: "net", host: key })) continue;
    try {
      const listener = Deno.listen(addr);
      open.set(key, { listener, early: acceptEarly(listener, name, undefined) });
    } catch {
      // In use, or no such address: the server's own listen says so.
    }
  }
  return {
    configText,
    take(want) {
      const key = hostPort(want.hostname, want.port);
      const entry = open.get(key);
      open.delete(key);
      return entry?.early.take();
    },
    takeLink: () => undefined,
    close() {
      for (const { listener, early } of open.values()) {
        early.close();
        closeQuietly(listener);
      }
      open.clear();
    },
  };
}

/** The plain link port server `name` will listen on (0: the system's choice); undefined with TLS. */
function linkPortOf(json: unknown, name: string): number | undefined {
  const config = json as { tls?: unknown; servers?: Record<string, { linkPort?: unknown }> };
  if (config?.tls !== undefined) return undefined;
  const port = config?.servers?.[name]?.linkPort ?? 0;
  return Number.isInteger(port) && (port as number) >= 0 && (port as number) <= 65535
    ? port as number
    : undefined;
}

/** Every client and link port the config names: never taken as a remembered link port. */
function configuredPorts(json: unknown): Set<number> {
  const servers = (json as { servers?: Record<string, { port?: unknown; linkPort?: unknown }> })
    ?.servers;
  const ports = new Set<number>();
  for (const s of Object.values(typeof servers === "object" && servers !== null ? servers : {})) {
    for (const p of [s?.port, s?.linkPort]) if (typeof p === "number") ports.add(p);
  }
  return ports;
}

/**
 * Starts building the offline Places index (a Worker: about a second of CPU on another thread)
 * when the flags and the environment choose the offline provider, so it builds while the rest of
 * the program loads and the store restores; the provider made later shares it (one index per
 * process, servers/places/offline.ts). Never throws: a bad choice is reported by the normal start,
 * a failed build retried by the first search. `stateDir` (the data dir, else the log dir) keeps
 * the built index on disk for the next start (servers/places/offline_cache.ts).
 *
 * @example
 * ```ts
 * await warmPlacesEarly("offline", "./data");
 * ```
 */
export async function warmPlacesEarly(
  places: PlacesKind | undefined,
  stateDir?: string,
): Promise<void> {
  const variable = "GOOGLE_PLACES_API_KEY";
  const granted = Deno.permissions.querySync({ name: "env", variable }).state === "granted";
  const apiKey = granted ? Deno.env.get(variable) : undefined;
  // Late (cli/late_import.ts): read after the listen, not before main.ts runs.
  const { placesKind } = await lateImport<typeof import("../servers/places/select.ts")>(
    new URL("../servers/places/select.ts", import.meta.url),
  );
  try {
    if (placesKind({ places, apiKey }) !== "offline") return;
  } catch {
    return;
  }
  const { warmOfflineIndex } = await lateImport<typeof import("../servers/places/offline.ts")>(
    new URL("../servers/places/offline.ts", import.meta.url),
  );
  warmOfflineIndex(stateDir).catch(() => {});
}

/** Never a permission prompt here: what is not granted is left to the normal start's checks. */
function granted(d: Deno.PermissionDescriptor): boolean {
  return Deno.permissions.querySync(d).state === "granted";
}

/**
 * The config's raw JSON (the default config without a path), or what an early listen returns
 * instead: nothing when the file may not or cannot be read, its text alone when it is not JSON
 * (the start parses it again and fails with its own message). A file too big or with nothing
 * to read in time throws its ConfigError, as the start would.
 */
async function earlyConfig(
  path: string | undefined,
): Promise<{ json: unknown; configText?: string } | { instead: EarlyListener | undefined }> {
  if (path === undefined) return { json: DEFAULT_CONFIG_JSON };
  if (!granted({ name: "read", path })) return { instead: undefined };
  let configText: string | undefined;
  try {
    configText = await readConfigText(path);
    return { json: JSON.parse(configText), configText };
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    return {
      instead: configText === undefined
        ? undefined
        : { configText, take: () => undefined, takeLink: () => undefined, close() {} },
    };
  }
}
