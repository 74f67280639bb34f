/**
 * The herd's configuration: which servers exist, where they listen, and which are linked.
 * Links are undirected: a link named on either side is a link.
 *
 * @module
 */

import { MAX_SERVER_NAME } from "./limits.ts";

/** One server of the herd. */
export interface ServerConfig {
  name: string;
  host: string;
  port: number;
  /** Neighbours, sorted, from both sides' lists (undirected). */
  neighbors: string[];
  /** With `tls`: the TLS port for links and observers (the client port stays plain TCP). */
  linkPort?: number;
}

/**
 * TLS for links and observers: PEM file paths; `{name}` in `cert`/`key` stands for the
 * server's name. Relative paths are relative to the config file.
 */
export interface TlsConfig {
  /** The herd's own CA: a peer's certificate must chain to it and name the peer. */
  ca: string;
  cert: string;
  key: string;
}

/** A validated herd. */
export interface HerdConfig {
  /** Servers in the order the config lists them. */
  servers: ServerConfig[];
  /** The herd secret, when the config file gives one. */
  secret?: string;
  /** When set, every link and observer stream is TLS (see `tls.ts`). */
  tls?: TlsConfig;
}

/** A config problem; the message is one clear line for the command line. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** The seed's herd: five servers on ports 12000–12004. */
export const DEFAULT_CONFIG_JSON = {
  servers: {
    Hill: { port: 12000, neighbors: ["Jaquez", "Smith"] },
    Jaquez: { port: 12001, neighbors: ["Hill", "Singleton"] },
    Smith: { port: 12002, neighbors: ["Hill", "Singleton", "Campbell"] },
    Campbell: { port: 12003, neighbors: ["Singleton", "Smith"] },
    Singleton: { port: 12004, neighbors: ["Jaquez", "Smith", "Campbell"] },
  },
};

/** Server names: their length bound is part of the peer line limit (limits.ts). */
const NAME = new RegExp(`^[A-Za-z0-9_.-]{1,${MAX_SERVER_NAME}}$`);

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Validates a parsed config object. Throws {@linkcode ConfigError} with one clear line.
 *
 * @example
 * ```ts
 * const herd = parseConfig({ servers: { A: { port: 9000, neighbors: ["B"] }, B: { port: 9001 } } });
 * herd.servers[1].neighbors; // ["A"]
 * ```
 */
export function parseConfig(json: unknown, baseDir?: string): HerdConfig {
  if (!isRecord(json) || !isRecord(json.servers)) {
    throw new ConfigError('config must be an object with a "servers" object');
  }
  const names = Object.keys(json.servers);
  if (names.length === 0) throw new ConfigError("config names no servers");
  const links = new Map<string, Set<string>>(names.map((n) => [n, new Set()]));
  const ports = new Map<string, string>();
  const servers: ServerConfig[] = [];
  for (const name of names) {
    if (!NAME.test(name)) {
      throw new ConfigError(
        `server name ${
          JSON.stringify(name)
        } must be 1-${MAX_SERVER_NAME} letters, digits, '_', '.' or '-'`,
      );
    }
    const s = json.servers[name];
    if (!isRecord(s)) throw new ConfigError(`server ${name}: must be an object`);
    const port = s.port;
    if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw new ConfigError(`server ${name}: bad port ${JSON.stringify(port)} (1-65535)`);
    }
    const host = s.host ?? "127.0.0.1";
    if (typeof host !== "string" || host === "" || /\s/.test(host)) {
      throw new ConfigError(`server ${name}: bad host ${JSON.stringify(host)}`);
    }
    const key = `${host}:${port}`;
    const other = ports.get(key) ?? ports.get(String(port));
    if (other !== undefined) {
      throw new ConfigError(`server ${name}: port ${port} is already used by ${other}`);
    }
    ports.set(key, name);
    ports.set(String(port), name);
    const neighbors = s.neighbors ?? [];
    if (!Array.isArray(neighbors) || neighbors.some((n) => typeof n !== "string")) {
      throw new ConfigError(`server ${name}: "neighbors" must be a list of server names`);
    }
    for (const n of neighbors as string[]) {
      if (!links.has(n)) throw new ConfigError(`server ${name}: unknown neighbour ${n}`);
      if (n === name) throw new ConfigError(`server ${name}: cannot be its own neighbour`);
      links.get(name)!.add(n);
      links.get(n)!.add(name);
    }
    let linkPort: number | undefined;
    if (s.linkPort !== undefined || json.tls !== undefined) {
      linkPort = s.linkPort as number;
      if (!Number.isInteger(linkPort) || linkPort < 1 || linkPort > 65535) {
        throw new ConfigError(
          `server ${name}: with "tls", "linkPort" must be a port (1-65535), got ${
            JSON.stringify(s.linkPort)
          }`,
        );
      }
      const clash = ports.get(`${host}:${linkPort}`) ?? ports.get(String(linkPort));
      if (clash !== undefined) {
        throw new ConfigError(`server ${name}: link port ${linkPort} is already used by ${clash}`);
      }
      ports.set(`${host}:${linkPort}`, name);
      ports.set(String(linkPort), name);
    }
    servers.push({ name, host, port, neighbors: [], ...(linkPort ? { linkPort } : {}) });
  }
  for (const s of servers) s.neighbors = [...links.get(s.name)!].sort();
  let secret: string | undefined;
  if (json.secret !== undefined) {
    if (typeof json.secret !== "string" || json.secret.length < 8) {
      throw new ConfigError('"secret" must be a string of at least 8 characters');
    }
    secret = json.secret;
  }
  return {
    servers,
    secret,
    ...(json.tls === undefined ? {} : { tls: parseTls(json.tls, baseDir) }),
  };
}

function parseTls(tls: unknown, baseDir: string | undefined): TlsConfig {
  const ok = isRecord(tls) &&
    ["ca", "cert", "key"].every((k) => typeof tls[k] === "string" && tls[k] !== "");
  if (!ok) throw new ConfigError('"tls" must be {"ca": path, "cert": path, "key": path}');
  const t = tls as unknown as TlsConfig;
  const at = (p: string) => (baseDir === undefined || p.startsWith("/") ? p : `${baseDir}/${p}`);
  return { ca: at(t.ca), cert: at(t.cert), key: at(t.key) };
}

/**
 * Reads and validates a config file; with no path, the default herd.
 *
 * @example
 * ```ts
 * const herd = await loadConfig(); // the seed's five servers
 * herd.servers.map((s) => s.name); // ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"]
 * ```
 */
export async function loadConfig(path?: string): Promise<HerdConfig> {
  if (path === undefined) return parseConfig(DEFAULT_CONFIG_JSON);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound ? "no such file" : String(err);
    throw new ConfigError(`cannot read config ${path}: ${why}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config ${path} is not valid JSON: ${(err as Error).message}`);
  }
  try {
    const slash = path.lastIndexOf("/");
    return parseConfig(json, slash === -1 ? "." : path.slice(0, slash) || "/");
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`config ${path}: ${err.message}`);
    throw err;
  }
}
