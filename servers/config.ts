/**
 * The herd's configuration: which servers exist, where they listen, and which are linked.
 * Links are undirected: a link named on either side is a link.
 *
 * @module
 */

import { visit } from "jsonc-parser";
import { z } from "zod";
import { MAX_SERVER_NAME, SERVER_NAME } from "./limits.ts";
import { didYouMean } from "./suggest.ts";
import { DEFAULT_CONFIG_JSON } from "./seed.ts";
import { ConfigError } from "./config_error.ts";
import { readConfigText } from "./config_file.ts";
import { jsonFault } from "./json_where.ts";

export { ConfigError } from "./config_error.ts";

// The seed herd lives in seed.ts (no zod: `server NAME` reads its port before loading this).
export {
  DEFAULT_CONFIG_JSON,
  SEED_LINKS,
  SEED_NAMES,
  seedConfigJson,
  seedNeighbors,
  type SeedServerJson,
} from "./seed.ts";

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

const PORT = z.int().min(1).max(65535);

/** One server's entry. Strict: an unknown key (`"neighbours"`) is an error, not ignored. */
const ServerSchema = z.strictObject({
  port: PORT.meta({ description: "client port (1-65535)" }),
  host: z.string().regex(/^\S+$/).optional().meta({
    description: "address to listen on and be dialled at (default 127.0.0.1)",
  }),
  neighbors: z.array(z.string()).optional().meta({
    description: "names of linked servers; a link named on either side is a link",
  }),
  linkPort: PORT.optional().meta({
    description: 'the port for links and observers (1-65535): TLS with "tls" (then required); ' +
      "without it, plain (default: one the system assigns, found by asking the client port)",
  }),
});

/** The shortest herd secret taken, from the config or HERD_SECRET, not counting whitespace. */
export const MIN_SECRET = 8;

/**
 * A secret's shape as a JSON Schema pattern (ECMA-262, as zod and ajv both read it): at least
 * {@linkcode MIN_SECRET} characters other than whitespace, none at either end.
 */
const SECRET_SHAPE = new RegExp(`^(?=(?:\\s*\\S){${MIN_SECRET}})\\S(?:[\\s\\S]*\\S)?$`);

/**
 * What is wrong with a herd secret, as the end of a line that names where it came from; undefined
 * when it is fine. Whitespace does not count toward the length (8 spaces is a secret anyone
 * guesses), and none may be at an end: a copy-paste's trailing space or LF made a secret differ
 * from the same one typed elsewhere, and links failed later as "bad proof".
 *
 * @example
 * ```ts
 * secretProblem("        "); // "must have at least 8 characters other than whitespace (it has 0)"
 * secretProblem("a-long-secret "); // "must not start or end with whitespace"
 * secretProblem("a long secret"); // undefined
 * ```
 */
export function secretProblem(secret: string): string | undefined {
  if (secret.length < MIN_SECRET) {
    return `must be at least ${MIN_SECRET} characters (it has ${secret.length})`;
  }
  const solid = secret.replace(/\s/g, "").length;
  if (solid < MIN_SECRET) {
    return `must have at least ${MIN_SECRET} characters other than whitespace (it has ${solid})`;
  }
  if (/^\s|\s$/.test(secret)) return "must not start or end with whitespace";
  return undefined;
}

/**
 * The herd secret: HERD_SECRET (`env`) when set, else the config's; undefined when neither is.
 * HERD_SECRET overrides the config, so it meets the config's rule too
 * ({@linkcode secretProblem}): one that does not is a {@linkcode ConfigError} (one line, exit 2),
 * never a herd keyed by a character or two, or by spaces.
 *
 * @example
 * ```ts
 * herdSecret("a-long-enough-secret", undefined); // "a-long-enough-secret"
 * herdSecret(undefined, "from-the-config"); // "from-the-config"
 * ```
 */
export function herdSecret(
  env: string | undefined,
  fromConfig: string | undefined,
): string | undefined {
  if (!env) return fromConfig;
  const problem = secretProblem(env);
  if (problem) throw new ConfigError(`HERD_SECRET ${problem}`);
  return env;
}

/**
 * The config file's shape, strict at every level. Rules across fields (known neighbours, no port
 * used twice, `linkPort` with `tls`, at least one server) are checked by {@linkcode parseConfig}.
 * docs/config.schema.json is generated from it (cli/config_schema.ts).
 */
export const ConfigSchema = z.strictObject({
  $schema: z.string().optional().meta({ description: "this file's JSON Schema, for editors" }),
  servers: z.record(z.string().regex(SERVER_NAME), ServerSchema).meta({
    description: `server name (1-${MAX_SERVER_NAME} letters, digits, '_', '.' or '-') -> server`,
  }),
  secret: z.string().min(MIN_SECRET).regex(SECRET_SHAPE).optional().meta({
    description: `the herd secret (at least ${MIN_SECRET} characters other than whitespace, ` +
      "none at either end); HERD_SECRET overrides it",
  }),
  tls: z.strictObject({
    ca: z.string().min(1).meta({ description: "the herd's CA certificate (PEM path)" }),
    cert: z.string().min(1).meta({ description: "{name} stands for the server's name" }),
    key: z.string().min(1).meta({ description: "{name} stands for the server's name" }),
  }).optional().meta({
    description: "TLS for links and observers; paths relative to the config file",
  }),
}).meta({ title: "Proxy herd configuration" });

/** The keys an object at `path` may have, for a "did you mean" hint. */
function knownKeys(path: readonly PropertyKey[]): string[] {
  if (path.length === 0) return Object.keys(ConfigSchema.shape);
  if (path[0] === "tls") return ["ca", "cert", "key"];
  return Object.keys(ServerSchema.shape);
}

/** Where in the config an issue is, as the user reads it. */
function where(path: readonly PropertyKey[]): string {
  if (path[0] === "servers" && path.length >= 2) {
    const rest = path.slice(2).join(".");
    return `server ${String(path[1])}${rest ? ` ${JSON.stringify(rest)}` : ""}`;
  }
  return path.length === 0 ? "config" : JSON.stringify(path.join("."));
}

function valueAt(json: unknown, path: readonly PropertyKey[]): unknown {
  let v = json;
  for (const k of path) v = (v as Record<PropertyKey, unknown> | undefined)?.[k];
  return v;
}

/** The first schema issue as one line (unknown keys first: they explain the rest). */
function issueLine(json: unknown, issues: readonly z.core.$ZodIssue[]): string {
  const issue = issues.find((i) => i.code === "unrecognized_keys") ?? issues[0];
  const path = issue.path;
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0];
    return `${where(path)}: unknown key ${JSON.stringify(key)}${didYouMean(key, knownKeys(path))}`;
  }
  if (issue.code === "invalid_key" && path[0] === "servers") {
    return `server name ${
      JSON.stringify(path[1])
    } must be 1-${MAX_SERVER_NAME} letters, digits, '_', '.' or '-'`;
  }
  if (path.length === 0) return 'config must be an object with a "servers" object';
  if (path[0] === "tls") return '"tls" must be {"ca": path, "cert": path, "key": path}';
  if (path.length === 1 && path[0] === "servers") return '"servers" must be an object';
  if (valueAt(json, path) === undefined) {
    return `${where(path.slice(0, -1))}: "${String(path.at(-1))}" is missing`;
  }
  if (path[0] === "servers" && path.length === 2) {
    return `server ${String(path[1])}: must be an object`;
  }
  if (path[0] === "servers" && path.length >= 3) {
    // A server field, whole: `server A: bad port 70000 (client port (1-65535))`.
    const key = String(path[2]);
    const described = (ServerSchema.shape as Record<string, z.ZodType>)[key]?.meta()?.description;
    return `server ${String(path[1])}: bad ${key} ${
      JSON.stringify(valueAt(json, path.slice(0, 3)))
    }${described ? ` (${described})` : ""}`;
  }
  if (path.length === 1 && path[0] === "secret") {
    const given = valueAt(json, path);
    const problem = typeof given === "string" && given.length >= MIN_SECRET
      ? secretProblem(given)
      : undefined;
    // The problem names counts and ends, never the secret itself.
    return problem
      ? `"secret" ${problem}`
      : `"secret" must be a string of at least ${MIN_SECRET} characters`;
  }
  return `${where(path)}: ${issue.message}`;
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
  // JSON.parse makes "__proto__" an own key, which the schema's record then drops silently.
  const given = (json as { servers?: unknown } | null)?.servers;
  if (typeof given === "object" && given !== null && Object.hasOwn(given, "__proto__")) {
    throw new ConfigError("server __proto__: not a usable server name");
  }
  const checked = ConfigSchema.safeParse(json);
  if (!checked.success) throw new ConfigError(issueLine(json, checked.error.issues));
  const config = checked.data;
  const names = Object.keys(config.servers);
  if (names.length === 0) throw new ConfigError("config names no servers");
  const folded = new Map<string, string>();
  for (const name of names) {
    // TLS tells servers apart by their certificates' names, which compare without case.
    const twin = folded.get(name.toLowerCase());
    if (twin !== undefined) {
      throw new ConfigError(`server ${name}: differs from ${twin} only in case`);
    }
    folded.set(name.toLowerCase(), name);
  }
  const links = new Map<string, Set<string>>(names.map((n) => [n, new Set()]));
  const ports = new PortBook();
  const servers: ServerConfig[] = [];
  for (const name of names) {
    const s = config.servers[name];
    const port = s.port;
    const host = s.host ?? "127.0.0.1";
    const other = ports.user(host, port);
    if (other !== undefined) {
      throw new ConfigError(`server ${name}: port ${port} is already used by ${other}`);
    }
    ports.add(host, port, name);
    for (const n of s.neighbors ?? []) {
      if (!links.has(n)) {
        throw new ConfigError(
          `server ${name}: unknown neighbour ${n}${didYouMean(n, names.filter((x) => x !== name))}`,
        );
      }
      if (n === name) throw new ConfigError(`server ${name}: cannot be its own neighbour`);
      links.get(name)!.add(n);
      links.get(n)!.add(name);
    }
    let linkPort: number | undefined;
    if (s.linkPort !== undefined || config.tls !== undefined) {
      linkPort = s.linkPort;
      if (linkPort === undefined) {
        throw new ConfigError(
          `server ${name}: with "tls", "linkPort" must be a port (1-65535), got undefined`,
        );
      }
      const clash = ports.user(host, linkPort);
      if (clash !== undefined) {
        throw new ConfigError(`server ${name}: link port ${linkPort} is already used by ${clash}`);
      }
      ports.add(host, linkPort, name);
    }
    servers.push({ name, host, port, neighbors: [], ...(linkPort ? { linkPort } : {}) });
  }
  for (const s of servers) s.neighbors = [...links.get(s.name)!].sort();
  return {
    servers,
    secret: config.secret,
    ...(config.tls === undefined ? {} : { tls: resolveTls(config.tls, baseDir) }),
  };
}

/**
 * The ports a config's servers listen on, by host. Two servers may share a port number on two
 * addresses (a herd across hosts, each on 12000); not on one address, nor beside a server that
 * listens on every address. `localhost` is taken for 127.0.0.1, an address in brackets without
 * them; other names are compared as written (the listen fails clearly if two resolve alike).
 */
class PortBook {
  #byPort = new Map<number, { host: string; name: string }[]>();

  /** The server already on `port` at `host` (or on every address), if any. */
  user(host: string, port: number): string | undefined {
    const h = hostKey(host);
    return this.#byPort.get(port)?.find((u) => u.host === h || isWildcard(u.host) || isWildcard(h))
      ?.name;
  }

  add(host: string, port: number, name: string): void {
    const list = this.#byPort.get(port) ?? [];
    list.push({ host: hostKey(host), name });
    this.#byPort.set(port, list);
  }
}

function hostKey(host: string): string {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return h === "localhost" ? "127.0.0.1" : h;
}

function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "";
}

function resolveTls(t: TlsConfig, baseDir: string | undefined): TlsConfig {
  const at = (p: string) => (baseDir === undefined || p.startsWith("/") ? p : `${baseDir}/${p}`);
  return { ca: at(t.ca), cert: at(t.cert), key: at(t.key) };
}

/** Levels of objects and arrays a config file may nest (the schema's own need four). */
export const MAX_CONFIG_DEPTH = 64;

/**
 * The first key some object of the JSON `text` holds twice, as its path (`servers.A`), or
 * undefined. JSON.parse keeps the last silently: a server written twice, or a port set in two
 * places, is a mistake the file's author must see. Throws {@linkcode ConfigError} past
 * {@linkcode MAX_CONFIG_DEPTH} levels.
 *
 * @example
 * ```ts
 * duplicateKey('{"servers": {"A": {"port": 1}, "A": {"port": 2}}}'); // "servers.A"
 * ```
 */
export function duplicateKey(text: string): string | undefined {
  const open: Set<string>[] = [];
  let found: string | undefined;
  let depth = 0;
  // The visitor recurses once per level: 20,000 levels (valid JSON) overflowed the stack.
  const deeper = () => {
    if (++depth > MAX_CONFIG_DEPTH) {
      throw new ConfigError(`nested deeper than ${MAX_CONFIG_DEPTH} levels`);
    }
  };
  visit(text, {
    onObjectBegin: () => {
      deeper();
      open.push(new Set());
    },
    onObjectEnd: () => {
      depth--;
      open.pop();
    },
    onArrayBegin: deeper,
    onArrayEnd: () => void depth--,
    onObjectProperty: (key, _offset, _length, _line, _column, path) => {
      const keys = open[open.length - 1];
      if (found === undefined && keys.has(key)) found = [...path(), key].join(".");
      keys.add(key);
    },
  });
  return found;
}

/**
 * Reads and validates a config file; with no path, the default herd. `given` is the file's text
 * when the caller read it already (once: the path may be a pipe, `--config <(...)`).
 *
 * @example
 * ```ts
 * const herd = await loadConfig(); // the seed's five servers
 * herd.servers.map((s) => s.name); // ["Hill", "Jaquez", "Smith", "Campbell", "Singleton"]
 * ```
 */
export async function loadConfig(path?: string, given?: string): Promise<HerdConfig> {
  if (path === undefined) return parseConfig(DEFAULT_CONFIG_JSON);
  let text: string;
  try {
    text = given ?? await readConfigText(path);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const why = err instanceof Deno.errors.NotFound ? "no such file" : String(err);
    throw new ConfigError(`cannot read config ${path}: ${why}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // Where, not V8's message: that quotes the bytes around the fault (a secret, maybe).
    const at = jsonFault(text);
    const where = at === undefined
      ? "unexpected input"
      : `unexpected ${at.end ? "end" : "character"} at line ${at.line}, column ${at.column}`;
    throw new ConfigError(`config ${path} is not valid JSON: ${where}`);
  }
  try {
    const twice = duplicateKey(text);
    if (twice !== undefined) throw new ConfigError(`${twice} is given twice: give it once`);
    const slash = path.lastIndexOf("/");
    return parseConfig(json, slash === -1 ? "." : path.slice(0, slash) || "/");
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`config ${path}: ${err.message}`);
    throw err;
  }
}
